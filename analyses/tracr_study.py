"""The Tracr study end to end (protocol §2): fine-tune the compiled Counter and Max-identifier over
eta x C_Tr x seeds, analyse every run against its exact starting point, reverse fine-tune Counter back
to count a at eta_VS beside the Scr.+FT control, and write ``results.json`` and ``report.html``.

Every stage is a job of ``interp.sweeps`` in a directory keyed by a hash of its arguments, so a re-run
skips finished work. Jobs are deterministic functions of their arguments.

CPU scale (measured on this 2-core machine, seed 0 unless said): the paper ran 10K SGD iterations at
batch 96. The grid runs Counter for ``counter_steps`` = 200 on 20-letter inputs and Max-identifier for
``max_identifier_steps`` = 300 on its 10 letters, batch 96. That is enough for the behaviours that form
early: the C_Tr = 1 wrapper at eta_S/eta_VS (within ~80 steps) and Max-identifier learning O_FT at
eta_VS. It is not enough for eta_L: with C_Tr = 0 the Counter is at the count-b marginal (28%) at step
200, 97% at 400 and 100% at 1000, so a longer arm (``long_steps`` = 1000, eta_L/eta_M x C_Tr, seed 0) covers
it; eta_M with C_Tr = 0 is still at the count-b marginal at 1000 steps. The whole study is about 32
CPU-minutes (the grid about 26): ~16 minutes on two free cores, more on a shared machine.
"""

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyses.paper_numbers import TRACR_TABLE3
from interp.config import from_dict, load_config, to_dict
from interp.errors import ConfigError, DataError
from interp.revival import geometric_mean, log_spaced_steps
from interp.stats import aggregate
from interp.sweeps import Job, JobResult, run_dir, run_jobs
from procedural_tasks import tracr_programs as tp
from procedural_tasks.tracr_protocols import (
    ANALYSIS,
    LR_LEVELS,
    STUDY_NOISE_STD,
    SUMMARY,
    TracrAnalysisConfig,
    TracrFinetuneConfig,
    TracrReverseFTConfig,
    eval_name,
    lr_for_level,
    sgd_train_config,
    write_json,
)

CELLS = (eval_name("pt", 1), eval_name("ft", 1), eval_name("pt", 0), eval_name("ft", 0))  # Tab. 3's order
RESULTS = "results.json"
REPORT = "report.html"


@dataclass(frozen=True, kw_only=True)
class TracrStudyConfig:
    """What the Tracr study runs: the grid, its sizes, and the reverse fine-tuning arm."""

    programs: tuple[str, ...] = ("counter", "max_identifier")  # compiled programs to fine-tune
    lr_levels: tuple[str, ...] = ("L", "M", "S", "VS")  # eta levels (1e-1 .. 1e-4)
    c_trs: tuple[float, ...] = (0.0, 1.0)  # C_Tr values of the fine-tuning data
    seeds: tuple[int, ...] = (0, 1, 2)  # each seed drives weight noise, data and evaluation sets
    counter_steps: int = 200  # SGD steps per Counter fine-tuning run (paper: 10K)
    max_identifier_steps: int = 300  # SGD steps per Max-identifier run (paper: 10K)
    counter_letters: int = 20  # letters per Counter input (compiled for up to 45)
    noise_std: float = STUDY_NOISE_STD  # weight noise before fine-tuning (paper: 1e-3; see noise_sweep)
    balance_mlps: bool = True  # function-preserving rescaling of ReLU neurons before the noise
    grad_clip: float | None = 1.0  # global gradient-norm clip; None: plain SGD (runs may diverge)
    eval_n: int = 500  # inputs per evaluation set
    q: int = 1  # planted offset r(x, O_FT) - r(x, O_PT)
    reverse_after: tuple[str, ...] = ("M", "L", "S")  # eta levels of the Counter runs reverse fine-tuned
    # (the paper's arms are M and L; S is added because at CPU scale the C_Tr = 1 wrapper forms at eta_S)
    reverse_c_tr: float = 1.0  # ... at this C_Tr
    reverse_lr_level: str = "VS"  # reverse fine-tuning LR (paper: eta_VS = 1e-4)
    reverse_steps: int = 200  # reverse fine-tuning steps (evaluated at log-spaced steps)
    reverse_threshold: float = 0.9  # revived when Acc O_PT at C_Te = 0 reaches this
    long_steps: int | None = 1000  # a longer Counter arm (None: off): eta_L needs ~400-600 steps to count b
    long_settings: tuple[tuple[str, float], ...] = (
        ("L", 0.0),
        ("L", 1.0),
        ("M", 0.0),
        ("M", 1.0),
    )  # (eta, C_Tr)
    long_seeds: tuple[int, ...] = (0,)  # seeds of the long arm (each also reverse fine-tuned)
    analyse: bool = True  # attention, detector, pruning, weight diff and patching per run
    prune_ks: tuple[int, ...] = (0, 1, 2, 3, 4, 8, 20)  # single weights pruned
    score_n: int = 512  # inputs scoring grad x weight
    noise_sweep: tuple[float, ...] = (
        0.0,
        1e-5,
        1e-4,
        3e-4,
        1e-3,
    )  # noise stds checked on the compiled models

    def __post_init__(self) -> None:
        for program in self.programs:
            if program not in tp.PROGRAMS:
                raise ConfigError(f"unknown program {program!r}; use one of {', '.join(tp.PROGRAMS)}")
        for level in (*self.lr_levels, *self.reverse_after, self.reverse_lr_level):
            lr_for_level(level)
        if not self.seeds or not self.lr_levels or not self.c_trs or not self.programs:
            raise ConfigError("programs, lr_levels, c_trs and seeds must each name at least one value")
        if any(not 0 <= c <= 1 for c in (*self.c_trs, self.reverse_c_tr)):
            raise ConfigError(f"C_Tr values must be in [0, 1], got {self.c_trs} / {self.reverse_c_tr}")
        if self.reverse_after and ("counter" not in self.programs or self.reverse_c_tr not in self.c_trs):
            raise ConfigError("reverse_after needs 'counter' in programs and reverse_c_tr in c_trs")
        if any(level not in self.lr_levels for level in self.reverse_after):
            raise ConfigError(f"reverse_after {self.reverse_after} must be among lr_levels {self.lr_levels}")
        if self.long_steps is not None and self.long_settings and "counter" not in self.programs:
            raise ConfigError("long_steps runs Counter; add 'counter' to programs or set long_steps to None")
        for level, c_tr in self.long_settings:
            lr_for_level(level)
            if not 0 <= c_tr <= 1:
                raise ConfigError(f"long_settings C_Tr {c_tr} must be in [0, 1]")
        if self.long_steps is not None and self.long_steps < 1:
            raise ConfigError(f"long_steps must be >= 1 or None, got {self.long_steps}")
        for name in ("counter_steps", "max_identifier_steps", "reverse_steps", "eval_n", "score_n"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def steps_for(self, program: str) -> int:
        return self.counter_steps if program == "counter" else self.max_identifier_steps

    def n_letters_for(self, program: str) -> int | None:
        return self.counter_letters if program == "counter" else None


PRESETS: dict[str, TracrStudyConfig] = {
    "cpu": TracrStudyConfig(),
    # Seconds: for tests and smoke runs; numbers mean nothing.
    "tiny": TracrStudyConfig(
        programs=("counter",),
        lr_levels=("M", "VS"),
        seeds=(0, 1),
        counter_steps=3,
        counter_letters=6,
        eval_n=24,
        reverse_after=("M",),
        reverse_steps=3,
        long_steps=4,
        long_settings=(("L", 0.0),),
        prune_ks=(0, 1, 2),
        score_n=16,
        noise_sweep=(0.0, 1e-4),
    ),
}


# --- jobs: top-level functions of JSON-native arguments, run in worker processes ------------------------


def job_finetune(*, out_dir: Path, finetune: dict, analysis: dict | None) -> dict:
    """Fine-tune one compiled program (TracrFinetuneConfig as a dict); analyse it unless it diverged."""
    from procedural_tasks.tracr_protocols import analyse_finetuned, run_finetune

    config = from_dict(TracrFinetuneConfig, finetune)
    result = run_finetune(config, out_dir)
    if result.status == "ok" and analysis is not None:
        analyse_finetuned(out_dir, config=from_dict(TracrAnalysisConfig, analysis))
    return {"status": result.status, "final_accuracy": result.final_accuracy}


def job_reverse_ft(
    *, out_dir: Path, reverse: dict, start_dir: str | None, control: dict | None, name: str
) -> dict:
    """Reverse fine-tune a fine-tuned run (``start_dir``) or the Scr.+FT control (``control``) to O_PT.

    The control is the compiled program for O_FT (``swap_operand``), balanced and noised as the
    fine-tuned runs were: it counts b exactly and has never counted a.
    """
    from procedural_tasks.tracr_protocols import load_tracr_model, prepared_model, run_reverse_ft

    config = from_dict(TracrReverseFTConfig, reverse)
    if start_dir is not None:
        summary = json.loads((Path(start_dir) / SUMMARY).read_text())
        if summary["status"] != "ok":
            raise DataError(
                f"the fine-tuned run {start_dir} {summary['status']}; nothing to reverse fine-tune"
            )
        model, _, _ = load_tracr_model(start_dir)
    elif control is not None:
        program = tp.PROGRAMS[config.program]
        model, _ = prepared_model(
            config.program,
            noise_std=control["noise_std"],
            seed=control["seed"],
            balance=control["balance"],
            operand=program.default_operand_ft,
        )
    else:
        raise ConfigError("job_reverse_ft needs start_dir or control")
    result, curve = run_reverse_ft(config, model, out_dir, name=name)
    return {
        "status": result.status,
        "steps_to_threshold": None if curve is None else curve.steps_to_threshold,
    }


def job_baseline(
    *,
    out_dir: Path,
    program: str,
    seeds: list[int],
    noise_sweep: list[float],
    n_letters: int | None,
    eval_n: int,
) -> dict:
    """The compiled program before fine-tuning: accuracy under each noise std (balanced or not), and where
    the fine-tuning gradient points at the start (its share per block component)."""
    from interp.evaluation import evaluate
    from procedural_tasks import tracr_models
    from procedural_tasks.tracr_protocols import (
        add_weight_noise,
        balance_mlp_neurons,
        dataset_batch,
        gradient_share,
        make_eval_data,
        prepared_model,
        tracr_eval_sets,
    )

    compiled, info = tracr_models.load_compiled(program)
    balanced = balance_mlp_neurons(compiled)
    sweep = []
    for std in noise_sweep:
        for label, model in (("compiled", compiled), ("balanced", balanced)):
            accs = []
            for seed in seeds:
                sets = tracr_eval_sets(info.config, eval_n, seed=seed, n_letters=n_letters)
                noisy = add_weight_noise(model, std=std, seed=seed)
                accs.append(evaluate(noisy, sets[2]).accuracy)  # o_pt@cte0
            sweep.append({"std": std, "weights": label, "acc_o_pt_cte0": accs})
    shares = []
    for seed in seeds:
        start, _ = prepared_model(program, noise_std=STUDY_NOISE_STD, seed=seed)
        data = make_eval_data(info.config, eval_n, seed=seed, c_te=0, n_letters=n_letters)
        shares.append(gradient_share(start, dataset_batch(data, target="ft")))
    result = {"program": program, "noise_sweep": sweep, "gradient_share_ft_loss": shares}
    write_json(out_dir / "baseline.json", result)
    return {"program": program}


# --- the sweep -----------------------------------------------------------------------------------------


def finetune_config(
    config: TracrStudyConfig, program: str, level: str, c_tr: float, seed: int, steps: int | None = None
) -> TracrFinetuneConfig:
    steps = steps or config.steps_for(program)
    return TracrFinetuneConfig(
        program=program,
        train=sgd_train_config(lr=lr_for_level(level), steps=steps, seed=seed, grad_clip=config.grad_clip),
        c_tr=c_tr,
        q=config.q,
        lr_level=level,
        n_letters=config.n_letters_for(program),
        noise_std=config.noise_std,
        balance_mlps=config.balance_mlps,
        eval_n=config.eval_n,
    )


def reverse_config(config: TracrStudyConfig, seed: int) -> TracrReverseFTConfig:
    steps = config.reverse_steps
    train = sgd_train_config(
        lr=lr_for_level(config.reverse_lr_level),
        steps=steps,
        seed=seed,
        grad_clip=config.grad_clip,
        eval_steps=log_spaced_steps(steps, 12),
    )
    return TracrReverseFTConfig(
        program="counter",
        train=train,
        threshold=config.reverse_threshold,
        n_letters=config.counter_letters,
        q=config.q,
        eval_n=config.eval_n,
    )


def build_jobs(config: TracrStudyConfig, out: Path) -> list[Job]:
    """Baselines, the fine-tuning grid, and the reverse fine-tuning runs with their controls."""
    jobs: list[Job] = []
    module = __name__ if __name__ != "__main__" else "analyses.tracr_study"
    for program in config.programs:
        kwargs = {
            "program": program,
            "seeds": list(config.seeds),
            "noise_sweep": list(config.noise_sweep),
            "n_letters": config.n_letters_for(program),
            "eval_n": config.eval_n,
        }
        jobs.append(
            Job(
                key=f"baseline/{program}",
                fn=f"{module}:job_baseline",
                out_dir=run_dir(out, "baseline", kwargs),
                kwargs=kwargs,
            )
        )
    analysis = (
        to_dict(TracrAnalysisConfig(prune_ks=config.prune_ks, score_n=config.score_n, eval_n=config.eval_n))
        if config.analyse
        else None
    )
    ft_dirs: dict[tuple[str, str, float, int], Path] = {}
    for program in config.programs:
        for level in config.lr_levels:
            for c_tr in config.c_trs:
                for seed in config.seeds:
                    kwargs = {
                        "finetune": to_dict(finetune_config(config, program, level, c_tr, seed)),
                        "analysis": analysis,
                    }
                    path = run_dir(out, "finetune", kwargs)
                    ft_dirs[(program, level, c_tr, seed)] = path
                    jobs.append(
                        Job(
                            key=_ft_key(program, level, c_tr, seed),
                            fn=f"{module}:job_finetune",
                            out_dir=path,
                            kwargs=kwargs,
                        )
                    )
    long_keys: dict[int, list[tuple[str, str, Path]]] = {}
    if config.long_steps is not None:
        for level, c_tr in config.long_settings:
            for seed in config.long_seeds:
                finetune = finetune_config(config, "counter", level, c_tr, seed, steps=config.long_steps)
                kwargs = {"finetune": to_dict(finetune), "analysis": analysis}
                key = f"long/counter/{level}/{c_tr:g}/{seed}"
                path = run_dir(out, "finetune", kwargs)
                jobs.append(Job(key=key, fn=f"{module}:job_finetune", out_dir=path, kwargs=kwargs))
                name = f"after eta_{level} C_Tr={c_tr:g}, {config.long_steps} steps"
                long_keys.setdefault(seed, []).append((key, name, path))
    for seed in sorted({*config.seeds, *long_keys}):
        reverse = to_dict(reverse_config(config, seed))
        for key, name, path in long_keys.get(seed, []):
            kwargs = {"reverse": reverse, "start_dir": str(path), "control": None, "name": name}
            jobs.append(
                Job(
                    key=f"reverse/{key}",
                    fn=f"{module}:job_reverse_ft",
                    out_dir=run_dir(out, "reverse_ft", kwargs),
                    kwargs=kwargs,
                    deps=(key,),
                )
            )
        if seed not in config.seeds:
            continue
        for level in config.reverse_after:
            start = ft_dirs[("counter", level, config.reverse_c_tr, seed)]
            kwargs = {
                "reverse": reverse,
                "start_dir": str(start),
                "control": None,
                "name": f"after eta_{level}",
            }
            jobs.append(
                Job(
                    key=f"reverse/{level}/{seed}",
                    fn=f"{module}:job_reverse_ft",
                    out_dir=run_dir(out, "reverse_ft", kwargs),
                    kwargs=kwargs,
                    deps=(_ft_key("counter", level, config.reverse_c_tr, seed),),
                )
            )
        if config.reverse_after or long_keys:
            control = {"noise_std": config.noise_std, "seed": seed, "balance": config.balance_mlps}
            kwargs = {"reverse": reverse, "start_dir": None, "control": control, "name": "Scr.+FT control"}
            jobs.append(
                Job(
                    key=f"reverse/control/{seed}",
                    fn=f"{module}:job_reverse_ft",
                    out_dir=run_dir(out, "reverse_ft", kwargs),
                    kwargs=kwargs,
                )
            )
    return jobs


def _ft_key(program: str, level: str, c_tr: float, seed: int) -> str:
    return f"finetune/{program}/{level}/{c_tr:g}/{seed}"


def run_study(
    config: TracrStudyConfig,
    out: str | Path,
    *,
    workers: int = 2,
    executor: str = "local",
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or finish) every job, then write ``results.json`` and ``report.html``; returns the results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "study_config.json", to_dict(config))
    start = time.perf_counter()
    jobs = build_jobs(config, out)
    results = run_jobs(jobs, workers=workers, executor=executor, progress=progress)
    wall = time.perf_counter() - start
    summary = summarise(config, jobs, results, wall_seconds=wall, workers=workers)
    write_json(out / RESULTS, summary)
    write_tracr_report(out / REPORT, summary)
    return summary


# --- summaries (pure functions of the job outputs) -----------------------------------------------------


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _agg(values: Sequence[float], scale: float = 1.0) -> dict[str, Any] | None:
    values = [v * scale for v in values if v is not None and math.isfinite(v)]
    return aggregate(values) if values else None


def load_runs(jobs: Sequence[Job], results: Sequence[JobResult]) -> list[dict[str, Any]]:
    """One record per fine-tuning job: its grid point, status, history and analysis (None when missing)."""
    status = {r.key: r for r in results}
    runs = []
    for job in jobs:
        if job.fn.rpartition(":")[2] != "job_finetune":
            continue
        ft = job.kwargs["finetune"]
        summary = _read(Path(job.out_dir) / SUMMARY)
        result = status[job.key]
        runs.append(
            {
                "key": job.key,
                "program": ft["program"],
                "lr_level": ft["lr_level"],
                "lr": ft["train"]["lr"],
                "c_tr": ft["c_tr"],
                "seed": ft["train"]["seed"],
                "steps": ft["train"]["steps"],
                "long": job.key.startswith("long/"),
                "job_status": result.status,
                "job_error": result.error,
                "status": summary["status"] if summary else "failed",
                "final_accuracy": summary["final_accuracy"] if summary else {},
                "history": summary["history"] if summary else [],
                "analysis": _read(Path(job.out_dir) / ANALYSIS),
                "out_dir": str(job.out_dir),
            }
        )
    return runs


def _groups(runs: Sequence[dict]) -> dict[tuple[str, str, float], list[dict]]:
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["program"], run["lr_level"], run["c_tr"]), []).append(run)
    return groups


def table3(runs: Sequence[dict]) -> list[dict[str, Any]]:
    """Tab. 3's layout: per program x eta x C_Tr, Acc O_PT / O_FT at C_Te = 1 and 0 (%, mean and CI over
    seeds, diverged runs excluded and counted), beside the paper's cell where it gives one."""
    rows = []
    for (program, level, c_tr), group in _groups(runs).items():
        ok = [r for r in group if r["status"] == "ok"]
        lr = LR_LEVELS[level]
        paper = TRACR_TABLE3.get((program, lr, c_tr))
        floor = [r["history"][-1]["eval"][eval_name("ft", 0)]["shortcut_floor"] for r in ok if r["history"]]
        rows.append(
            {
                "program": program,
                "lr": lr,
                "lr_level": level,
                "c_tr": c_tr,
                "n_seeds": len(group),
                "n_diverged": sum(r["status"] == "diverged" for r in group),
                "n_failed": sum(r["status"] == "failed" for r in group),
                "cells": {cell: _agg([r["final_accuracy"].get(cell) for r in ok], 100.0) for cell in CELLS},
                "start_cells": {
                    cell: _agg([r["history"][0]["eval"][cell]["accuracy"] for r in ok if r["history"]], 100.0)
                    for cell in CELLS
                },
                "wrapper_floor_o_ft_cte0": _agg(floor, 100.0),
                "paper": dict(zip(CELLS, paper, strict=True)) if paper else None,
            }
        )
    return rows


def attention_summary(runs: Sequence[dict]) -> list[dict[str, Any]]:
    """Attention mass of the counting/read head from the answer position onto O_PT / O_FT / BOS keys."""
    rows = []
    for (program, level, c_tr), group in _groups(runs).items():
        done = [r["analysis"] for r in group if r["analysis"]]
        if not done:
            continue
        layer = done[0]["attention"]["layer"]
        row: dict[str, Any] = {"program": program, "lr_level": level, "c_tr": c_tr, "layer": layer}
        for which in ("start", "finetuned"):
            row[which] = {
                g: _agg([a["attention"][which][g][layer] for a in done])
                for g in ("o_pt", "o_ft", "bos", "other")
            }
        row["detector"] = {
            which: {k: _agg([a["detector"][which][k] for a in done]) for k in done[0]["detector"][which]}
            for which in ("start", "finetuned")
        }
        rows.append(row)
    return rows


def pruning_summary(runs: Sequence[dict]) -> list[dict[str, Any]]:
    """Acc O_PT (C_Te = 0) after pruning the top-K single weights by grad x weight, and its gain over K = 0."""
    rows = []
    for (program, level, c_tr), group in _groups(runs).items():
        done = [r["analysis"]["pruning"] for r in group if r["analysis"]]
        if not done:
            continue
        ks = done[0]["ks"]
        target = eval_name("pt", 0)

        rows.append(
            {
                "program": program,
                "lr_level": level,
                "c_tr": c_tr,
                "ks": ks,
                "acc_o_pt_cte0": {
                    str(k): _agg([p["accuracy"][target][i] for p in done], 100.0) for i, k in enumerate(ks)
                },
                "acc_o_ft_cte1": {
                    str(k): _agg([p["accuracy"][eval_name("ft", 1)][i] for p in done], 100.0)
                    for i, k in enumerate(ks)
                },
                "gain_k1": _agg([_best_gain(p, ks, 1) for p in done], 100.0) if 1 in ks else None,
                "gain_k4": _agg([_best_gain(p, ks, 4) for p in done], 100.0),
                "gain_k_max": _agg([_best_gain(p, ks, max(ks)) for p in done], 100.0),
                "per_seed_acc_o_pt_cte0": [p["accuracy"][target] for p in done],
                "units_seed0": done[0]["units"][:4],
            }
        )
    return rows


def _best_gain(pruning: dict, ks: Sequence[int], k_max: int) -> float:
    """Best Acc O_PT (C_Te = 0) with at most ``k_max`` weights pruned, minus the unpruned accuracy."""
    acc = pruning["accuracy"][eval_name("pt", 0)]
    return max(a for k, a in zip(ks, acc, strict=True) if k <= k_max) - acc[0]


def localisation_summary(runs: Sequence[dict]) -> list[dict[str, Any]]:
    """Where the fine-tuning change sits: the most-changed weights (absolute and relative to the compiled
    weight) and which block output, patched in from the start model, restores most O_PT accuracy."""
    rows = []
    for (program, level, c_tr), group in _groups(runs).items():
        done = [r["analysis"] for r in group if r["analysis"]]
        if not done:
            continue
        hooks_ = list(done[0]["patching"]["restored"])
        rows.append(
            {
                "program": program,
                "lr_level": level,
                "c_tr": c_tr,
                "top_norm": [a["weight_diff"]["top_norm"][0]["name"] for a in done],
                "top_relative_compiled": [a["weight_diff"]["top_relative_compiled"][0]["name"] for a in done],
                "patch_restored": {h: _agg([a["patching"]["restored"][h] for a in done]) for h in hooks_},
            }
        )
    return rows


def reverse_summary(jobs: Sequence[Job], results: Sequence[JobResult]) -> dict[str, Any]:
    """Revival curves per arm (after eta_M, after eta_L, control) and per seed, with speed-ups over the
    same seed's control (a lower bound when the control never got there)."""
    from interp.revival import RevivalCurve, speedup

    status = {r.key: r for r in results}
    arms: dict[str, dict[int, dict]] = {}
    for job in jobs:
        if job.fn.rpartition(":")[2] != "job_reverse_ft":
            continue
        seed = job.kwargs["reverse"]["train"]["seed"]
        summary = _read(Path(job.out_dir) / SUMMARY)
        entry = {
            "job_status": status[job.key].status,
            "error": status[job.key].error,
            "status": summary["status"] if summary else "failed",
            "revival": summary["revival"] if summary else None,
            "o_ft_cte1": [r["eval"][eval_name("ft", 1)]["accuracy"] for r in summary["history"]]
            if summary
            else [],
        }
        arms.setdefault(job.kwargs["name"], {})[seed] = entry
    control = arms.get("Scr.+FT control", {})
    out: dict[str, Any] = {}
    for name, per_seed in arms.items():
        curves = {s: e["revival"] for s, e in per_seed.items() if e["revival"]}
        speedups = []
        for seed, curve in curves.items():
            ctrl = control.get(seed, {}).get("revival")
            if ctrl and name != "Scr.+FT control":
                value = speedup(RevivalCurve(**_curve_args(curve)), RevivalCurve(**_curve_args(ctrl)))
                speedups.append({"seed": seed, **value.to_json()})
        steps = [c["steps_to_threshold"] for c in curves.values()]
        out[name] = {
            "per_seed": {str(s): e for s, e in per_seed.items()},
            "n_revived": sum(s is not None for s in steps),
            "n_runs": len(per_seed),
            "steps_to_threshold": steps,
            "auc": _agg([c["auc"] for c in curves.values()]),
            "speedup_vs_control": speedups,
            "speedup_geomean": geometric_mean([s["value"] for s in speedups])
            if speedups and all(s["value"] for s in speedups)
            else None,
        }
    return out


def _curve_args(curve: dict) -> dict:
    return {**curve, "steps": tuple(curve["steps"]), "values": tuple(curve["values"])}


def findings(
    config: TracrStudyConfig,
    attention: list,
    pruning: list,
    reverse: dict,
    table: list,
    long: dict | None = None,
) -> list[dict]:
    """Each of the study's Tracr claims, what we measured, and whether it held (no claim is assumed)."""
    out = []
    att = {(r["program"], r["lr_level"], r["c_tr"]): r for r in attention if r["program"] == "counter"}
    if att:
        keep = [(k, r) for k, r in att.items() if k[1] in ("S", "VS") or (k[1] == "M" and k[2] == 1.0)]
        start_a = np.mean([r["start"]["o_pt"]["mean"] for r in att.values()])
        kept = [
            r["finetuned"]["o_pt"]["mean"] >= 0.5 * start_a and r["finetuned"]["o_ft"]["mean"] < 0.1
            for _, r in keep
        ]
        m0 = att.get(("counter", "M", 0.0))
        moved = None if m0 is None else m0["finetuned"]["o_ft"]["mean"] > m0["finetuned"]["o_pt"]["mean"]
        measured = "; ".join(
            f"eta_{k[1]} C_Tr={k[2]:g}: a {r['finetuned']['o_pt']['mean']:.2f}, b {r['finetuned']['o_ft']['mean']:.2f}"
            for k, r in sorted(att.items(), key=lambda kv: (list(LR_LEVELS).index(kv[0][1]), kv[0][2]))
        )
        out.append(
            {
                "claim": "(a) Counter: with a small LR, or C_Tr = 1, the counting head keeps attending to a "
                "(a wrapper); eta_M with C_Tr = 0 moves it to b",
                "measured": f"block-1 attention mass from the answer position (compiled+noise: a {start_a:.2f}); {measured}",
                "parts": {
                    "keeps_a_small_lr_or_ctr1": bool(all(kept)) if kept else None,
                    "eta_M_ctr0_moves_to_b": moved,
                },
                "held": bool(all(kept)) and bool(moved) if kept and moved is not None else None,
            }
        )
    prune = {(r["program"], r["lr_level"], r["c_tr"]): r for r in pruning if r["program"] == "counter"}
    corr = [prune[k] for k in (("counter", "M", 1.0), ("counter", "S", 1.0)) if k in prune]
    if corr:
        gains = [r["gain_k1"]["mean"] for r in corr if r["gain_k1"]]
        measured = "; ".join(
            f"eta_{r['lr_level']} C_Tr={r['c_tr']:g}: K=1 {r['gain_k1']['mean']:+.1f} pts, "
            f"K<=4 {r['gain_k4']['mean']:+.1f}, K<={r['ks'][-1]} {r['gain_k_max']['mean']:+.1f}"
            for r in sorted(prune.values(), key=lambda r: (list(LR_LEVELS).index(r["lr_level"]), r["c_tr"]))
            if r["gain_k1"]
        )
        out.append(
            {
                "claim": "(b) Counter: pruning a single weight raises count-a accuracy by >60 points after "
                "fine-tuning on correlated data (eta_M, eta_S)",
                "measured": f"gain in Acc O_PT (C_Te=0) over the unpruned model, mean over seeds: {measured}",
                "held": bool(gains) and all(g > 60.0 for g in gains),
            }
        )
    after_m, after_l = reverse.get("after eta_M"), reverse.get("after eta_L")
    if after_m and after_l:
        ctrl = reverse.get("Scr.+FT control", {})
        out.append(
            {
                "claim": "(c) Counter: reverse fine-tuning at eta_VS = 1e-4 revives count a after eta_M "
                "fine-tuning but not after eta_L",
                "measured": (
                    f"revived (Acc O_PT >= {config.reverse_threshold:g} within {config.reverse_steps} steps): "
                    f"after eta_M {after_m['n_revived']}/{after_m['n_runs']} (steps {after_m['steps_to_threshold']}), "
                    f"after eta_L {after_l['n_revived']}/{after_l['n_runs']} (steps {after_l['steps_to_threshold']}), "
                    f"Scr.+FT control {ctrl.get('n_revived')}/{ctrl.get('n_runs')} (steps {ctrl.get('steps_to_threshold')})"
                    + "".join(
                        f"; {name} (extra arm) {arm['n_revived']}/{arm['n_runs']} (steps {arm['steps_to_threshold']})"
                        for name, arm in reverse.items()
                        if name not in ("after eta_M", "after eta_L", "Scr.+FT control")
                    )
                ),
                "held": after_m["n_revived"] * 2 > after_m["n_runs"]
                and after_l["n_revived"] * 2 <= after_l["n_runs"],
            }
        )
    long_att = {(r["lr_level"], r["c_tr"]): r for r in (long or {}).get("attention", [])}
    long_tab = {(r["lr_level"], r["c_tr"]): r for r in (long or {}).get("table3", [])}
    if long_att and long_tab:
        parts = {}
        texts = []
        for key in sorted(long_att, key=lambda k: (list(LR_LEVELS).index(k[0]), k[1])):
            a, t = long_att[key]["finetuned"], long_tab[key]["cells"]
            ft0 = t[eval_name("ft", 0)]["mean"] if t[eval_name("ft", 0)] else float("nan")
            texts.append(
                f"eta_{key[0]} C_Tr={key[1]:g}: Acc O_FT(C_Te=0) {ft0:.1f}%, attention a {a['o_pt']['mean']:.2f} b {a['o_ft']['mean']:.2f}"
            )
            if key[1] == 0.0:
                parts[f"eta_{key[0]}_ctr0_counts_b"] = ft0 >= 90.0
                parts[f"eta_{key[0]}_ctr0_attends_b"] = a["o_ft"]["mean"] > a["o_pt"]["mean"]
        out.append(
            {
                "claim": f"(a, {long['steps']} steps) eta_L / eta_M with C_Tr = 0 learn to count b (Tab. 3: 100% / 98.8%) "
                "and eta_M moves the counting head to b (Fig. 10)",
                "measured": "; ".join(texts),
                "parts": parts,
                "held": parts.get("eta_M_ctr0_attends_b"),
            }
        )
    vs = [r for r in table if r["program"] == "max_identifier" and r["lr_level"] == "VS"]
    if vs and all(r["cells"][eval_name("ft", 0)] for r in vs):
        means = {r["c_tr"]: r["cells"][eval_name("ft", 0)]["mean"] for r in vs}
        out.append(
            {
                "claim": "(d) Max-identifier: eta_VS learns the fine-tuning task (paper: Acc O_FT at C_Te=0 "
                "91.1% / 88.6% for C_Tr = 0 / 1)",
                "measured": "Acc O_FT at C_Te=0: "
                + ", ".join(f"C_Tr={c:g}: {m:.1f}%" for c, m in sorted(means.items())),
                "held": all(m >= 80.0 for m in means.values()),
            }
        )
    return out


def summarise(
    config: TracrStudyConfig,
    jobs: Sequence[Job],
    results: Sequence[JobResult],
    *,
    wall_seconds: float,
    workers: int,
) -> dict[str, Any]:
    """results.json: the Table-3 analogue beside the paper, attention, pruning, localisation, reverse FT,
    baselines and findings."""
    all_runs = load_runs(jobs, results)
    runs = [r for r in all_runs if not r["long"]]
    long_runs = [r for r in all_runs if r["long"]]
    table = table3(runs)
    attention = attention_summary(runs)
    pruning = pruning_summary(runs)
    reverse = reverse_summary(jobs, results)
    long_horizon = {
        "steps": config.long_steps,
        "table3": table3(long_runs),
        "attention": attention_summary(long_runs),
        "pruning": pruning_summary(long_runs),
        "localisation": localisation_summary(long_runs),
    }
    baselines = {
        job.kwargs["program"]: _read(Path(job.out_dir) / "baseline.json")
        for job in jobs
        if job.fn.endswith(":job_baseline")
    }
    return {
        "config": to_dict(config),
        "wall_seconds": wall_seconds,
        "workers": workers,
        "jobs": {s: sum(r.status == s for r in results) for s in ("ok", "cached", "failed", "skipped")},
        "failed_jobs": [{"key": r.key, "error": r.error} for r in results if not r.ok],
        "table3": table,
        "attention": attention,
        "pruning": pruning,
        "localisation": localisation_summary(runs),
        "long_horizon": long_horizon,
        "reverse_ft": reverse,
        "baselines": baselines,
        "findings": findings(config, attention, pruning, reverse, table, long_horizon),
        "curves": {
            r["key"]: {
                "steps": [h["step"] for h in r["history"]],
                **{cell: [h["eval"][cell]["accuracy"] for h in r["history"]] for cell in CELLS},
            }
            for r in all_runs
            if r["history"]
        },
        "attention_maps": {
            r["key"]: r["analysis"]["attention_map"]
            for r in all_runs
            if r["analysis"] and r["seed"] == min(config.seeds)
        },
    }


# --- report --------------------------------------------------------------------------------------------


def _pct(cell: dict | None) -> str | None:
    if not cell:
        return None
    if cell.get("ci_low") is None:
        return f"{cell['mean']:.1f}"
    return f"{cell['mean']:.1f} [{cell['ci_low']:.1f}, {cell['ci_high']:.1f}]"


def _table3_table(table: list[dict]) -> Any:
    from interp.reports import Table

    rows = []
    for r in table:
        paper = r["paper"] or {}
        ours = [_pct(r["cells"][c]) for c in CELLS]
        theirs = [None if c not in paper else f"{paper[c]:.1f}" for c in CELLS]
        cells = [f"{o} | {t}" if t else o for o, t in zip(ours, theirs, strict=True)]
        rows.append(
            (r["program"], f"{r['lr']:g}", f"{r['c_tr']:g}", *cells, f"{r['n_diverged']}/{r['n_seeds']}")
        )
    columns = (
        "program",
        "eta",
        "C_Tr",
        "O_PT @C_Te=1",
        "O_FT @C_Te=1",
        "O_PT @C_Te=0",
        "O_FT @C_Te=0",
        "diverged",
    )
    return Table(columns=columns, rows=tuple(rows))


def write_tracr_report(path: Path, summary: dict[str, Any]) -> Path:
    """report.html: Table 3 beside the paper, findings, accuracy curves, attention maps, pruning, revival."""
    from interp.figures import curves_figure, heatmap_grid_figure
    from interp.reports import Section, Table, write_report

    sections = [
        Section(
            title="Table 3: ours | paper",
            content=_table3_table(summary["table3"]),
            caption="Accuracy (%) at the end of fine-tuning: mean [95% bootstrap CI over seeds] | the paper's "
            "Tab. 3 cell. Diverged runs (non-finite loss) are excluded from the means and counted.",
        )
    ]
    long = summary.get("long_horizon") or {}
    if long.get("table3"):
        sections.append(
            Section(
                title=f"Counter, longer arm ({long['steps']} steps)",
                content=_table3_table(long["table3"]),
                caption="The same cells for the longer Counter runs (seeds as listed in the config's long_seeds; "
                "no CI with one seed).",
            )
        )
    sections.append(
        Section(
            title="Findings",
            content=Table(
                columns=("claim", "measured", "held"),
                rows=tuple((f["claim"], f["measured"], f["held"]) for f in summary["findings"]),
            ),
            caption="Each Tracr claim of the study with what this run measured; 'held' is computed from the numbers.",
        )
    )
    curves = summary["curves"]
    for program in summary["config"]["programs"]:
        for cell, label in (
            (eval_name("ft", 1), "Acc O_FT at C_Te=1"),
            (eval_name("pt", 0), "Acc O_PT at C_Te=0"),
        ):
            series = []
            for level in summary["config"]["lr_levels"]:
                for c_tr in summary["config"]["c_trs"]:
                    runs = [
                        v for k, v in curves.items() if k.startswith(f"finetune/{program}/{level}/{c_tr:g}/")
                    ]
                    if not runs or len({len(v["steps"]) for v in runs}) != 1:
                        continue
                    series.append(
                        {
                            "name": f"eta_{level} C_Tr={c_tr:g}",
                            "x": runs[0]["steps"],
                            "ys": [v[cell] for v in runs],
                            "dash": "solid" if c_tr == 1.0 else "dash",
                        }
                    )
            if series:
                sections.append(
                    Section(
                        title=f"{program}: {label} during fine-tuning",
                        content=curves_figure(
                            series,
                            title=f"{program}: {label}",
                            x_title="SGD step",
                            y_title=label,
                            y_range=(0, 1),
                        ),
                        caption="Mean over seeds with the min-max band; solid C_Tr = 1, dashed C_Tr = 0. Step 0 is the "
                        "compiled model after balancing and noise.",
                    )
                )
    long_curves = {k: v for k, v in curves.items() if k.startswith("long/")}
    if long_curves:
        series = [
            {
                "name": f"{k.split('/')[2]} C_Tr={k.split('/')[3]} {cell}",
                "x": v["steps"],
                "ys": [v[cell]],
                "dash": "solid" if cell == eval_name("ft", 0) else "dot",
            }
            for k, v in sorted(long_curves.items())
            for cell in (eval_name("ft", 0), eval_name("pt", 0))
        ]
        sections.append(
            Section(
                title="Counter, longer arm: accuracy during fine-tuning",
                content=curves_figure(
                    series,
                    title="Counter, longer arm",
                    x_title="SGD step",
                    y_title="accuracy",
                    y_range=(0, 1),
                ),
                caption="Acc O_FT at C_Te=0 (solid: has the model learned to count b?) and Acc O_PT at C_Te=0 (dotted).",
            )
        )
    maps = summary["attention_maps"]
    counter_maps = {k: v for k, v in maps.items() if k.startswith("finetune/counter/")}
    if counter_maps:
        first = next(iter(counter_maps.values()))
        panels = {"compiled (+noise)": first["start"]}
        for key, value in counter_maps.items():
            _, _, level, c_tr, _ = key.split("/")
            if level in ("S", "M") and value["letters"] == first["letters"]:
                panels[f"eta_{level} C_Tr={c_tr}"] = value["finetuned"]
        for key, value in maps.items():
            if key.startswith("long/counter/") and value["letters"] == first["letters"]:
                _, _, level, c_tr, _ = key.split("/")
                panels[f"eta_{level} C_Tr={c_tr}, long"] = value["finetuned"]
        labels = ["$", *first["letters"]]
        sections.append(
            Section(
                title="Counter: counting-head attention, compiled vs fine-tuned (Fig. 10)",
                content=heatmap_grid_figure(
                    panels,
                    x_labels=labels,
                    y_labels=labels,
                    title="block-1 attention",
                    cols=3,
                    zmin=0,
                    zmax=1,
                ),
                caption="Block-1 attention pattern (rows: query positions, columns: keys) on one input, seed 0. The compiled "
                "head attends to BOS and to every 'a'; a head that learned to count b would attend to the 'b's.",
            )
        )
    pruning = [r for r in summary["pruning"] if r["program"] == "counter"]
    if pruning:
        series = [
            {
                "name": f"eta_{r['lr_level']} C_Tr={r['c_tr']:g}",
                "x": r["ks"],
                "ys": r["per_seed_acc_o_pt_cte0"],
                "dash": "solid" if r["c_tr"] == 1.0 else "dash",
            }
            for r in pruning
        ]
        sections.append(
            Section(
                title="Counter: single-weight pruning",
                content=curves_figure(
                    series,
                    title="Acc O_PT (C_Te=0) after pruning the top-K weights",
                    x_title="K weights pruned",
                    y_title="Acc O_PT",
                    y_range=(0, 1),
                ),
                caption="Mean over seeds of count-a accuracy after zeroing the K weights with the highest grad x weight "
                "on the count-a loss (interp.pruning, weight level). The study reports >60 points from K = 1.",
            )
        )
    reverse = summary["reverse_ft"]
    series = []
    for name, arm in reverse.items():
        curves_ = [e["revival"] for e in arm["per_seed"].values() if e["revival"]]
        if curves_ and len({len(c["steps"]) for c in curves_}) == 1:
            series.append(
                {
                    "name": name,
                    "x": [max(1, s) for s in curves_[0]["steps"]],
                    "ys": [c["values"] for c in curves_],
                }
            )
    if series:
        threshold = summary["config"]["reverse_threshold"]
        sections.append(
            Section(
                title="Counter: reverse fine-tuning to count a at eta_VS",
                content=curves_figure(
                    series,
                    title="Acc O_PT (C_Te=0) during reverse fine-tuning",
                    x_title="step (log)",
                    y_title="Acc O_PT",
                    log_x=True,
                    y_range=(0, 1),
                    reference_lines={"revived": threshold},
                ),
                caption="Mean and min-max band over seeds. The Scr.+FT control is the compiled Counter for b (an exact "
                "edit of the operand detector), balanced and noised like the fine-tuned models.",
            )
        )
    baseline_rows = []
    for program, base in summary["baselines"].items():
        if not base:
            continue
        for row in base["noise_sweep"]:
            baseline_rows.append((program, row["weights"], row["std"], float(np.mean(row["acc_o_pt_cte0"]))))
    if baseline_rows:
        sections.append(
            Section(
                title="Compiled models under weight noise",
                content=Table(
                    columns=("program", "weights", "noise std", "Acc O_PT (C_Te=0)"),
                    rows=tuple(baseline_rows),
                ),
                caption="Mean over seeds. 'compiled': the weights as tracr wrote them; 'balanced': each ReLU neuron rescaled "
                "to equal input/output norms (same function). The paper's noise (std 1e-3) destroys the exact Counter.",
            )
        )
    intro = (
        "<p>Fine-tuning the compiled Tracr Counter (count b instead of a) and Max-identifier (6th instead of 5th "
        f"largest) at CPU scale: {summary['config']['counter_steps']} / {summary['config']['max_identifier_steps']} "
        f"SGD steps, batch 96, seeds {summary['config']['seeds']}; wall time {summary['wall_seconds']:.0f} s with "
        f"{summary['workers']} workers. See results.json for every number.</p>"
    )
    return write_report(
        path,
        title="ftmech: Tracr study",
        intro_html=intro,
        sections=sections,
        data={"table3": summary["table3"]},
    )


# --- command line --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analyses.tracr_study --out runs/tracr [--preset cpu|tiny] [--config c.json] [--seeds 3]``."""
    from interp.cli import ArgParser
    from interp.errors import FtmechError

    parser = ArgParser(prog="ftmech reproduce tracr", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tracr", help="study directory (re-runs skip finished jobs)")
    parser.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)}")
    parser.add_argument("--config", help="a TracrStudyConfig JSON/YAML file (overrides --preset)")
    parser.add_argument("--seeds", type=int, help="use seeds 0..N-1")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--executor", default="local", help="local or ray")
    try:
        args = parser.parse_args(argv)
        if args.config:
            config = load_config(TracrStudyConfig, args.config)
        elif args.preset in PRESETS:
            config = PRESETS[args.preset]
        else:
            raise ConfigError(f"unknown preset {args.preset!r}; use one of {', '.join(PRESETS)} or --config")
        if args.seeds is not None:
            config = from_dict(TracrStudyConfig, {**to_dict(config), "seeds": list(range(args.seeds))})
        summary = run_study(config, args.out, workers=args.workers, executor=args.executor)
    except FtmechError as exc:
        print(f"ftmech: error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "out": args.out,
                "wall_seconds": round(summary["wall_seconds"], 1),
                "jobs": summary["jobs"],
                "findings": [{"claim": f["claim"][:3], "held": f["held"]} for f in summary["findings"]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
