"""The PCFG study end to end: pretraining, the fine-tuning grid, reverse fine-tuning with controls,
mechanistic analyses, the wrapper audit, ``results.json`` and ``report.html``.

Every stage is a job of ``interp.sweeps`` whose directory is keyed by a hash of its arguments, so a
re-run (after an interruption or with more seeds) redoes only what is missing. Jobs are
deterministic functions of their arguments: the local process pool and Ray give the same files.
"""

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.checkpoints import read_checkpoint_info
from interp.cli import ArgParser
from interp.config import load_config, to_dict
from interp.errors import ConfigError
from interp.evaluation import evaluate
from interp.models import preset as model_preset
from interp.sweeps import Job, run_dir, run_jobs
from interp.training import RESUME_DIR
from procedural_tasks.pcfg_protocols import (
    LR_LABELLINGS,
    LR_LEVELS,
    FinetuneConfig,
    PretrainConfig,
    ReverseFTConfig,
    counting_eval_sets,
    load_pcfg_model,
    lr_for_level,
    run_finetune,
    run_pretrain,
    run_reverse_ft,
    study_preset,
    write_json,
)
from procedural_tasks.pcfg_tasks import PRIORS, parse_prior

FinetuneSetting = tuple[str, str, float]  # (prior name, lr level, c_tr)


@dataclass(frozen=True, kw_only=True)
class PCFGStudyConfig:
    """What the PCFG study runs. Sizes come from the preset; lists name the grid."""

    preset: str = "cpu"  # cpu (2-core CPU, minutes), paper (the study's sizes, GPU) or tiny (tests)
    seeds: tuple[int, ...] = (0, 1, 2)  # every model is trained once per seed
    priors: tuple[str, ...] = ("low", "medium")  # pretraining operand priors (names in PRIORS)
    control_prior: str = "only_b"  # Scr.+FT control: pretrained never asked to count a
    finetune_grid: tuple[FinetuneSetting, ...] = (
        ("low", "L", 1.0),
        ("low", "M", 0.0),
        ("low", "M", 1.0),
        ("low", "S", 1.0),
        ("medium", "M", 1.0),
    )
    reverse_from: tuple[FinetuneSetting, ...] = (("low", "M", 1.0), ("medium", "M", 1.0), ("low", "L", 1.0))
    reverse_lr_level: str = "S"  # reverse fine-tuning LR (smaller than the fine-tuning one)
    lr_labelling: str = "main_text"  # which of the study's eta labellings the levels use
    pretrain_lr: float = 1e-3  # eta_PT; the eta levels are fractions of it
    q: int = 1  # planted offset count(b) - count(a)
    threshold_frac: float = 0.9  # revived at this fraction of the pretrained model's O_PT accuracy
    analyse: bool = True  # run probes, pruning, diffing, patching and the audit
    device: str = "auto"

    def __post_init__(self) -> None:
        study_preset(self.preset)
        if not self.seeds:
            raise ConfigError("seeds is empty; give at least one, e.g. --seeds 3")
        for prior in (*self.priors, self.control_prior):
            if prior not in PRIORS:
                raise ConfigError(f"unknown prior '{prior}'; use one of {', '.join(PRIORS)}")
        for prior, level, c_tr in (*self.finetune_grid, *self.reverse_from):
            if prior not in self.priors:
                raise ConfigError(
                    f"fine-tuning setting uses prior '{prior}' which is not in priors {self.priors}"
                )
            if level not in LR_LEVELS:
                raise ConfigError(f"unknown lr level '{level}'; use one of {', '.join(LR_LEVELS)}")
            if not 0 <= c_tr <= 1:
                raise ConfigError(f"c_tr must be in [0, 1], got {c_tr}")
        for setting in self.reverse_from:
            if setting not in self.finetune_grid:
                raise ConfigError(f"reverse_from {setting} is not in finetune_grid; add it there too")
        if self.reverse_lr_level not in LR_LEVELS:
            raise ConfigError(f"unknown reverse_lr_level '{self.reverse_lr_level}'")
        if self.lr_labelling not in LR_LABELLINGS:
            raise ConfigError(f"unknown lr_labelling '{self.lr_labelling}'; use {', '.join(LR_LABELLINGS)}")


# --- jobs: top-level functions of JSON-native arguments, run in worker processes ------------------


def _resume(out_dir: Path) -> bool:
    return (out_dir / RESUME_DIR / "state.json").is_file()


def job_pretrain(*, out_dir: Path, preset: str, prior: str, seed: int, lr: float, device: str) -> dict:
    """Pretrain one model on the PCFG mixture with operand prior ``prior``."""
    sp = study_preset(preset)
    train = sp.train_config("pretrain", lr=lr, seed=seed, device=device)
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


# --- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The study's jobs and, for aggregation, which job directory holds which run."""

    jobs: list[Job]
    pretrain: dict[tuple[int, str], Path]  # (seed, prior) -> dir
    finetune: dict[tuple[int, FinetuneSetting], Path]
    reverse: dict[tuple[int, str], Path]  # (seed, setting_name or control name) -> dir
    analysis: dict[int, Path]


def setting_name(setting: FinetuneSetting) -> str:
    """A readable name for a fine-tuned model, e.g. ``FT(low, eta_M, C_Tr=1)``."""
    prior, level, c_tr = setting
    return f"FT({prior}, eta_{level}, C_Tr={c_tr:g})"


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

    ft_lr = {lvl: lr_for_level(lvl, config.pretrain_lr, config.lr_labelling) for lvl in LR_LEVELS}
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
            from analyses.pcfg_analysis import analysis_kwargs

            kwargs = analysis_kwargs(config, seed, pretrain, finetune)
            deps = [pretrain[seed, p] for p in (*config.priors, config.control_prior)]
            deps += [finetune[seed, s] for s in config.finetune_grid]
            analysis[seed] = add(
                "analysis", "analyses.pcfg_analysis:job_analysis", {**common, **kwargs}, deps
            )
    return Plan(jobs, pretrain, finetune, reverse, analysis)


# --- entry point -----------------------------------------------------------------------------------


def run_study(
    config: PCFGStudyConfig, out: Path, *, workers: int = 2, executor: str = "local", progress: bool = True
) -> dict:
    """Run (or finish) the study in ``out``; write results.json and report.html; return the results."""
    from analyses.pcfg_report import write_pcfg_report
    from analyses.pcfg_results import collect_results

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "study_config.json", to_dict(config))
    plan = plan_study(config, out / "runs")
    t0 = time.time()
    results = run_jobs(plan.jobs, workers=workers, executor=executor, progress=progress)
    failed = [r for r in results if r.status == "failed"]
    summary = collect_results(config, plan, results, wall_seconds=time.time() - t0)
    write_json(out / "results.json", summary)
    write_pcfg_report(summary, out / "report.html")
    if failed:
        first = failed[0]
        raise ConfigError(
            f"{len(failed)} job(s) failed, e.g. {first.key}: {first.error}; see {first.out_dir}"
        )
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="ftmech reproduce pcfg", description="Reproduce the PCFG study end to end.")
    p.add_argument("--preset", help="cpu (the default), paper or tiny")
    p.add_argument("--seeds", type=int, help="number of seeds, run as 0..N-1 (default 3)")
    p.add_argument("--out", default="runs/pcfg", help="study directory (re-runs reuse finished jobs)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes (one torch thread each)")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--device", help="auto (the default), cpu or cuda")
    p.add_argument("--config", help="a PCFGStudyConfig JSON/YAML file; --preset/--seeds/--device override it")
    p.add_argument("--no-analysis", action="store_true", help="skip probes, pruning, diffing and the audit")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    config = load_config(PCFGStudyConfig, args.config) if args.config else PCFGStudyConfig()
    overrides = {
        "preset": args.preset,
        "device": args.device,
        "seeds": args.seeds and tuple(range(args.seeds)),
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.no_analysis:
        overrides["analyse"] = False
    config = dataclasses.replace(config, **overrides)
    summary = run_study(
        config, Path(args.out), workers=args.workers, executor=args.executor, progress=not args.no_progress
    )
    print(
        json.dumps(
            {
                "results": str(Path(args.out) / "results.json"),
                "report": str(Path(args.out) / "report.html"),
                "wall_seconds": round(summary["wall_seconds"], 1),
            }
        )
    )
    return summary
