"""The PCFG study's jobs and plan: pretraining, the fine-tuning grid, reverse fine-tuning with controls and the
per-seed analyses, each a job of ``interp.sweeps`` in a directory keyed by a hash of its arguments, so a re-run
(after an interruption or with more seeds) redoes only what is missing. Jobs are deterministic functions of
their JSON-native arguments: the local process pool and Ray give the same files.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from analyses.pcfg.analysis import PROBES, analysis_jobs
from analyses.pcfg.config import FinetuneSetting, PCFGStudyConfig, setting_name
from analyses.pcfg.report import write_study_report
from analyses.pcfg.results import STUDY, collect_results
from interp.checkpoints import read_checkpoint_info
from interp.config import to_dict
from interp.evaluation import evaluate
from interp.jsonio import write_json
from interp.lr_levels import lr_for_level
from interp.models import preset as model_preset
from interp.study_runs import StudySweep, SweepOptions, run_study_sweep
from interp.sweeps import Job, Planner
from interp.training import RESUME_DIR, RESUME_NEUTRAL, with_data_workers
from procedural_tasks.pcfg_protocols import (
    SPEED_FIELDS,
    FinetuneConfig,
    PCFGPreset,
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

C = TypeVar("C", FinetuneConfig, ReverseFTConfig)


def _resume(out_dir: Path) -> bool:
    return (out_dir / RESUME_DIR / "state.json").is_file()


def job_pretrain(
    *,
    out_dir: Path,
    preset: str,
    prior: str,
    seed: int,
    lr: float,
    device: str,
    steps: int | None = None,
    speed: dict[str, Any] | None = None,
    data_workers: int | None = None,
) -> dict:
    """Pretrain one model on the PCFG mixture with operand prior ``prior`` (``steps``: the preset's for the
    prior if None; ``speed``: overrides of the preset's precision and compile; ``data_workers``: of its data
    worker processes, which never change the batches)."""
    sp = study_preset(preset)
    steps = sp.pretrain_steps_for(prior) if steps is None else steps
    train = sp.train_config("pretrain", lr=lr, seed=seed, device=device, steps=steps, speed=speed)
    task = dataclasses.replace(sp.task, prior=parse_prior(prior))
    model = dataclasses.replace(model_preset(sp.model), seed=seed)
    config = with_data_workers(
        PretrainConfig(task=task, model=model, train=train, eval_n=sp.eval_n), data_workers
    )
    result = run_pretrain(config, out_dir, resume=_resume(out_dir), progress=False)
    return {name: e["accuracy"] for name, e in result.history[-1]["eval"].items()}


def _stage_config(
    config_class: type[C],
    stage: str,
    *,
    preset: str,
    seed: int,
    lr: float,
    device: str,
    steps: int | None = None,
    speed: dict[str, Any] | None = None,
    data_workers: int | None = None,
    **fields: Any,
) -> tuple[PCFGPreset, C]:
    """The preset and the config of a fine-tuning or reverse stage: the preset's recipe at ``lr`` (for
    ``steps``, the preset's when None; ``speed`` and ``data_workers`` as in ``job_pretrain``), ``fields``."""
    sp = study_preset(preset)
    train = sp.train_config(stage, lr=lr, seed=seed, device=device, steps=steps, speed=speed)
    return sp, with_data_workers(config_class(train=train, eval_n=sp.eval_n, **fields), data_workers)


def job_finetune(*, out_dir: Path, base: str, **stage: Any) -> dict:
    """Fine-tune ``base`` on counting b; then score it on larger fresh evaluation sets (Table 5).

    ``stage``: preset, seed, lr and device, and the FinetuneConfig fields lr_level, lr_labelling, c_tr and q.
    """
    sp, config = _stage_config(FinetuneConfig, "finetune", **stage)
    run_finetune(config, base, out_dir, resume=_resume(out_dir), progress=False)
    model, _, task = load_pcfg_model(out_dir, device=config.train.device)
    final = {
        s.name: evaluate(model, s).to_json()
        for s in counting_eval_sets(
            task, sp.final_eval_n, q=config.q, seed=10_000 + config.train.seed, strict=True
        )
    }
    write_json(out_dir / "final_eval.json", final)
    return {name: e["accuracy"] for name, e in final.items()}


def job_reverse(*, out_dir: Path, start: str, reference: str, **stage: Any) -> dict:
    """Reverse fine-tune ``start`` on counting a; the threshold comes from the pretrained ``reference``.

    ``stage``: preset, seed, lr and device, and the ReverseFTConfig fields lr_level, from_scratch and
    threshold_frac.
    """
    _, config = _stage_config(ReverseFTConfig, "reverse", **stage)
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
    analysis: dict[int, dict[str, Path]]  # seed -> {PROBES or fine-tuned model name: dir}


def plan_study(config: PCFGStudyConfig, root: Path) -> Plan:
    """Every job of the study with its content-addressed directory under ``root``."""
    sp = study_preset(config.preset)
    # The sizes behind the preset name are part of a run's identity (and recorded in its job.json), so a
    # code change to the preset never reuses results made with the old sizes.
    sizes = {"study_preset": to_dict(sp), "model_preset": to_dict(model_preset(sp.model))}
    planner = Planner(root, identity=sizes)
    pretrain, finetune, reverse, analysis = {}, {}, {}, {}
    for seed in config.seeds:
        pretrain |= _plan_pretrain(planner, config, seed)
        finetune |= _plan_finetune(planner, config, seed, pretrain)
        reverse |= _plan_reverse(planner, config, seed, pretrain, finetune)
        if config.analyse:
            analysis[seed] = _plan_analysis(planner, config, seed, pretrain, finetune)
    return Plan(planner.jobs, pretrain, finetune, reverse, analysis)


def _common(config: PCFGStudyConfig) -> dict[str, Any]:
    """The arguments every training job shares: the preset, the device and the speed settings that can
    change a result (bf16 rounding, compiled kernels); the data workers go in ``_runtime``."""
    speed = {
        name: getattr(config, name)
        for name in SPEED_FIELDS
        if name not in RESUME_NEUTRAL and getattr(config, name) is not None
    }
    return {"preset": config.preset, "device": config.device} | ({"speed": speed} if speed else {})


def _runtime(config: PCFGStudyConfig) -> dict[str, Any]:
    """A training job's ``Job.runtime``: the data worker count, which never changes a batch, so a finished job
    is reused whatever it is."""
    return {"data_workers": config.data_workers} if config.data_workers is not None else {}


def _ft_lr(config: PCFGStudyConfig, level: str) -> float:
    return lr_for_level(level, config.pretrain_lr, config.lr_labelling)


def _plan_pretrain(planner: Planner, config: PCFGStudyConfig, seed: int) -> dict[tuple[int, str], Path]:
    """One pretrained model per operand prior, the control's prior included."""
    kwargs = {**_common(config), "seed": seed, "lr": config.pretrain_lr}
    sp = study_preset(config.preset)
    return {
        (seed, prior): planner.add(
            "pretrain",
            f"{__name__}:job_pretrain",
            {**kwargs, "prior": prior},
            steps=sp.pretrain_steps_for(prior),
            runtime=_runtime(config),
        )
        for prior in (*config.priors, config.control_prior)
    }


def _plan_finetune(
    planner: Planner, config: PCFGStudyConfig, seed: int, pretrain: dict[tuple[int, str], Path]
) -> dict[tuple[int, FinetuneSetting], Path]:
    """The fine-tuning grid: prior x LR level x C_Tr."""
    dirs = {}
    steps = study_preset(config.preset).finetune_steps
    for setting in config.finetune_grid:
        prior, level, c_tr = setting
        base = pretrain[seed, prior]
        kwargs = {**_common(config), "base": str(base), "seed": seed, "lr": _ft_lr(config, level)}
        kwargs |= {"lr_level": level, "lr_labelling": config.lr_labelling, "c_tr": c_tr, "q": config.q}
        dirs[seed, setting] = planner.add(
            "finetune", f"{__name__}:job_finetune", kwargs, [base], steps=steps, runtime=_runtime(config)
        )
    return dirs


def _plan_reverse(
    planner: Planner,
    config: PCFGStudyConfig,
    seed: int,
    pretrain: dict[tuple[int, str], Path],
    finetune: dict[tuple[int, FinetuneSetting], Path],
) -> dict[tuple[int, str], Path]:
    """Reverse fine-tuning of the settings in ``reverse_from`` and of the Scr.+FT and Scr. controls."""
    level = config.reverse_lr_level
    kwargs = {**_common(config), "seed": seed, "lr": _ft_lr(config, level), "lr_level": level}
    kwargs["threshold_frac"] = config.threshold_frac
    starts = {setting_name(s): (finetune[seed, s], pretrain[seed, s[0]], False) for s in config.reverse_from}
    control, ref = pretrain[seed, config.control_prior], pretrain[seed, config.priors[0]]
    starts |= {"Scr.+FT": (control, ref, False), "Scr.": (control, ref, True)}
    steps = study_preset(config.preset).reverse_steps
    dirs = {}
    for name, (start, reference, scratch) in starts.items():
        job = {**kwargs, "start": str(start), "reference": str(reference), "from_scratch": scratch}
        if name == "Scr.+FT" and config.control_reverse_factor > 1:
            job["steps"] = config.control_reverse_factor * steps
        dirs[seed, name] = planner.add(
            "reverse",
            f"{__name__}:job_reverse",
            job,
            [start, reference],
            steps=job.get("steps", steps),
            runtime=_runtime(config),
        )
    return dirs


def _plan_analysis(
    planner: Planner,
    config: PCFGStudyConfig,
    seed: int,
    pretrain: dict[tuple[int, str], Path],
    finetune: dict[tuple[int, FinetuneSetting], Path],
) -> dict[str, Path]:
    """The seed's probes job over all its models, and per wrapped candidate a job for its pruning, diffing,
    patching and audit evidence: small jobs, so that they pack onto the workers beside the training."""
    common = {"preset": config.preset, "device": config.device}
    dirs = {}
    for name, kwargs in analysis_jobs(config, seed, pretrain, finetune).items():
        if name == PROBES:
            fn = "analyses.pcfg.analysis:job_probes"
            deps = [Path(p) for p in (*kwargs["pretrained"].values(), kwargs["control"])]
            deps += [Path(p) for p in kwargs["finetuned"].values()]
        else:
            fn = "analyses.pcfg.analysis:job_model_analysis"
            deps = [Path(kwargs[k]) for k in ("pretrained", "finetuned", "control")]
        dirs[name] = planner.add("analysis", fn, common | kwargs, deps)
    return dirs


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
