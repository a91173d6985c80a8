"""The PCFG study's jobs and plan: pretraining, the fine-tuning grid, reverse fine-tuning with controls and the
per-seed analyses, each a job of ``interp.sweeps`` in a directory keyed by a hash of its arguments, so a re-run
(after an interruption or with more seeds) redoes only what is missing. Jobs are deterministic functions of
their JSON-native arguments: the local process pool and Ray give the same files.
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyses.pcfg.analysis import analysis_kwargs
from analyses.pcfg.config import FinetuneSetting, PCFGStudyConfig, setting_name
from analyses.pcfg.report import write_study_report
from analyses.pcfg.results import STUDY, collect_results
from interp.checkpoints import read_checkpoint_info
from interp.config import to_dict
from interp.evaluation import evaluate
from interp.jsonio import write_json
from interp.lr_levels import LEVELS, lr_for_level
from interp.models import preset as model_preset
from interp.study_runs import StudySweep, SweepOptions, run_study_sweep
from interp.sweeps import Job, run_dir
from interp.training import RESUME_DIR
from procedural_tasks.pcfg_protocols import (
    FinetuneConfig,
    PretrainConfig,
    ReverseFTConfig,
    counting_eval_sets,
    load_pcfg_model,
    run_finetune,
    run_pretrain,
    run_reverse_ft,
    study_preset,
)
from procedural_tasks.pcfg_tasks import parse_prior


def _resume(out_dir: Path) -> bool:
    return (out_dir / RESUME_DIR / "state.json").is_file()


def job_pretrain(
    *, out_dir: Path, preset: str, prior: str, seed: int, lr: float, device: str, steps: int | None = None
) -> dict:
    """Pretrain one model on the PCFG mixture with operand prior ``prior`` (``steps``: the preset's if None)."""
    sp = study_preset(preset)
    train = sp.train_config("pretrain", lr=lr, seed=seed, device=device, steps=steps)
    task = dataclasses.replace(sp.task, prior=parse_prior(prior))
    model = dataclasses.replace(model_preset(sp.model), seed=seed)
    config = PretrainConfig(task=task, model=model, train=train, eval_n=sp.eval_n)
    result = run_pretrain(config, out_dir, resume=_resume(out_dir), progress=False)
    return {name: e["accuracy"] for name, e in result.history[-1]["eval"].items()}


def job_finetune(
    *,
    out_dir: Path,
    base: str,
    preset: str,
    seed: int,
    lr: float,
    lr_level: str,
    lr_labelling: str,
    c_tr: float,
    q: int,
    device: str,
) -> dict:
    """Fine-tune ``base`` on counting b; then score it on larger fresh evaluation sets (Table 5)."""
    sp = study_preset(preset)
    train = sp.train_config("finetune", lr=lr, seed=seed, device=device)
    config = FinetuneConfig(
        train=train, c_tr=c_tr, q=q, lr_level=lr_level, lr_labelling=lr_labelling, eval_n=sp.eval_n
    )
    run_finetune(config, base, out_dir, resume=_resume(out_dir), progress=False)
    model, _, task = load_pcfg_model(out_dir, device=device)
    final = {
        s.name: evaluate(model, s).to_json()
        for s in counting_eval_sets(task, sp.final_eval_n, q=q, seed=10_000 + seed)
    }
    write_json(out_dir / "final_eval.json", final)
    return {name: e["accuracy"] for name, e in final.items()}


def job_reverse(
    *,
    out_dir: Path,
    start: str,
    reference: str,
    preset: str,
    seed: int,
    lr: float,
    lr_level: str,
    from_scratch: bool,
    threshold_frac: float,
    device: str,
) -> dict:
    """Reverse fine-tune ``start`` on counting a; the threshold comes from the pretrained ``reference``."""
    sp = study_preset(preset)
    train = sp.train_config("reverse", lr=lr, seed=seed, device=device)
    config = ReverseFTConfig(
        train=train,
        threshold_frac=threshold_frac,
        from_scratch=from_scratch,
        lr_level=lr_level,
        eval_n=sp.eval_n,
    )
    reference_accuracy = read_checkpoint_info(reference).metadata["final_eval"]["count_a@cte0"]["accuracy"]
    curve = run_reverse_ft(
        config, start, out_dir, reference_accuracy=reference_accuracy, progress=False, resume=_resume(out_dir)
    )
    return {"steps_to_threshold": curve.steps_to_threshold, "auc": curve.auc}


@dataclass(frozen=True)
class Plan:
    """The study's jobs and, for aggregation, which job directory holds which run."""

    jobs: list[Job]
    pretrain: dict[tuple[int, str], Path]  # (seed, prior) -> dir
    finetune: dict[tuple[int, FinetuneSetting], Path]
    reverse: dict[tuple[int, str], Path]  # (seed, setting_name or control name) -> dir
    analysis: dict[int, Path]


def plan_study(config: PCFGStudyConfig, root: Path) -> Plan:
    """Every job of the study with its content-addressed directory under ``root``."""
    jobs: list[Job] = []
    pretrain, finetune, reverse, analysis = {}, {}, {}, {}
    keys: dict[Path, str] = {}

    sp = study_preset(config.preset)
    # The sizes behind the preset name are part of a run's identity (and recorded in its job.json), so a
    # code change to the preset never reuses results made with the old sizes.
    sizes = {"study_preset": to_dict(sp), "model_preset": to_dict(model_preset(sp.model))}

    def add(stage: str, fn: str, kwargs: dict[str, Any], deps: Sequence[Path] = ()) -> Path:
        out = run_dir(root, stage, {**kwargs, **sizes})
        key = f"{stage}/{out.name}"
        keys[out] = key
        jobs.append(Job(key=key, fn=fn, out_dir=out, kwargs=kwargs, deps=tuple(keys[d] for d in deps)))
        return out

    ft_lr = {lvl: lr_for_level(lvl, config.pretrain_lr, config.lr_labelling) for lvl in LEVELS}
    common = {"preset": config.preset, "device": config.device}
    for seed in config.seeds:
        for prior in (*config.priors, config.control_prior):
            pretrain[seed, prior] = add(
                "pretrain",
                f"{__name__}:job_pretrain",
                {**common, "prior": prior, "seed": seed, "lr": config.pretrain_lr},
            )
        for setting in config.finetune_grid:
            prior, level, c_tr = setting
            base = pretrain[seed, prior]
            finetune[seed, setting] = add(
                "finetune",
                f"{__name__}:job_finetune",
                {
                    **common,
                    "base": str(base),
                    "seed": seed,
                    "lr": ft_lr[level],
                    "lr_level": level,
                    "lr_labelling": config.lr_labelling,
                    "c_tr": c_tr,
                    "q": config.q,
                },
                [base],
            )
        reverse_kwargs = {
            **common,
            "seed": seed,
            "lr": ft_lr[config.reverse_lr_level],
            "lr_level": config.reverse_lr_level,
            "threshold_frac": config.threshold_frac,
        }
        for setting in config.reverse_from:
            ref = pretrain[seed, setting[0]]
            start = finetune[seed, setting]
            reverse[seed, setting_name(setting)] = add(
                "reverse",
                f"{__name__}:job_reverse",
                {**reverse_kwargs, "start": str(start), "reference": str(ref), "from_scratch": False},
                [start, ref],
            )
        control = pretrain[seed, config.control_prior]
        ref = pretrain[seed, config.priors[0]]
        for name, scratch in (("Scr.+FT", False), ("Scr.", True)):
            reverse[seed, name] = add(
                "reverse",
                f"{__name__}:job_reverse",
                {**reverse_kwargs, "start": str(control), "reference": str(ref), "from_scratch": scratch},
                [control, ref],
            )
        if config.analyse:
            kwargs = analysis_kwargs(config, seed, pretrain, finetune)
            deps = [pretrain[seed, p] for p in (*config.priors, config.control_prior)]
            deps += [finetune[seed, s] for s in config.finetune_grid]
            analysis[seed] = add(
                "analysis", "analyses.pcfg.analysis:job_analysis", {**common, **kwargs}, deps
            )
    return Plan(jobs, pretrain, finetune, reverse, analysis)


def run_study(config: PCFGStudyConfig, out: Path, options: SweepOptions | None = None) -> dict:
    """Run (or finish) the study in ``out`` (``interp.study_runs``); write results.json and report.html."""
    sweep = StudySweep(
        STUDY,
        to_dict(config),
        plan=lambda: plan_study(config, out / "runs"),
        jobs=lambda plan: plan.jobs,
        summarise=lambda plan, results, wall: collect_results(config, plan, results, wall_seconds=wall),
        report=write_study_report,
    )
    return run_study_sweep(sweep, out, options)
