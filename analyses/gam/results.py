"""The GAM study's results.json: cost curves with fitted slopes, losses at equal steps and equal time, the
receptive-field runs, the wrapper rows of both architectures, job seconds and the checked findings."""

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from analyses.gam.config import (
    OPEN_CHOICES,
    PAPER_SCALING,
    PAPER_SOURCE,
    PAPER_TINYSTORIES,
    STUDY,
    GAMStudyConfig,
)
from analyses.gam.findings import check_findings
from analyses.gam.jobs import ARCHS, Plan, covered_seq_len
from analyses.gam.lm import RESULT
from analyses.gam.pcfg_jobs import AUDIT_FILE
from interp.checkpoints import read_checkpoint_info
from interp.config import to_dict
from interp.gam import receptive_field
from interp.jsonio import read_json
from interp.sweeps import JobResult
from procedural_tasks.pcfg_protocols import study_preset

SCHEMA_VERSION = 2  # of results.json; bumped when a field changes meaning (2: the materialised transformer)
TARGET = "count_a@cte0"


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x: 1 is linear cost, 2 quadratic."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def _throughput(plan: Plan) -> dict[str, Any]:
    out = {}
    for arch, path in plan.throughput.items():
        rows = read_json(path / RESULT)["rows"]
        lengths = [r["length"] for r in rows]
        out[arch] = {
            "rows": rows,
            "time_slope": loglog_slope(lengths, [r["seconds_per_step"] for r in rows]),
            "memory_slope": loglog_slope(lengths, [r["activation_mib"] for r in rows]),
        }
    return out


def loss_at(curve: list[dict], seconds: float) -> float:
    """Validation loss of the last evaluation made within ``seconds`` of training."""
    within = [p for p in curve if p["seconds"] <= seconds + 1e-9]
    return within[-1]["val_loss"]


def _lm(plan: Plan, seeds: tuple[int, ...]) -> dict[str, Any]:
    curves = {(arch, seed): read_json(plan.lm[arch, seed] / RESULT) for arch in ARCHS for seed in seeds}
    per_seed = []
    for seed in seeds:
        budget = min(curves[arch, seed]["curve"][-1]["seconds"] for arch in ARCHS)
        row: dict[str, Any] = {"seed": seed, "equal_time_seconds": budget}
        for arch in ARCHS:
            curve = curves[arch, seed]["curve"]
            row[arch] = {
                "steps": curve[-1]["step"],
                "seconds": curve[-1]["seconds"],
                "equal_steps_loss": curve[-1]["val_loss"],
                "equal_time_loss": loss_at(curve, budget),
                "seconds_per_step": curve[-1]["seconds"] / max(1, curve[-1]["step"]),
            }
        per_seed.append(row)
    first = curves[ARCHS[0], seeds[0]]
    return {
        "corpus": plan.corpus,
        "d_vocab": first["d_vocab"],
        "n_params": {arch: curves[arch, seeds[0]]["n_params"] for arch in ARCHS},
        "per_seed": per_seed,
        "curves": {f"{arch}/{seed}": curves[arch, seed]["curve"] for arch in ARCHS for seed in seeds},
    }


def _final_eval(path: Path) -> dict[str, dict]:
    return read_checkpoint_info(path).metadata["final_eval"]


def _receptive_field(config: GAMStudyConfig, plan: Plan) -> dict[str, Any]:
    sp = study_preset(config.pcfg_preset)
    gam, covering = plan.models["gam"], plan.models["gam_covering"]
    runs = {}
    for (arch, run, seed), path in plan.pcfg.items():
        if run in ("cpu_window", "pt_low"):
            result = _final_eval(path)[TARGET]
            runs.setdefault(f"{arch}/{run}", []).append(
                {
                    "seed": seed,
                    "accuracy": result["accuracy"],
                    "floor": result["majority_floor"],
                    "n": result["n"],
                }
            )
    return {
        "cpu_window": {
            "window": sp.task.window,
            "seq_len": sp.task.seq_len,
            "conv_kernel": gam["conv_kernel"],
            "receptive_field": receptive_field(gam["n_layers"], gam["conv_kernel"]),
        },
        "covered": {
            "window": config.covered_window,
            "seq_len": covered_seq_len(config),
            "conv_kernel": covering["conv_kernel"],
            "receptive_field": receptive_field(covering["n_layers"], covering["conv_kernel"]),
        },
        "runs": runs,
    }


def _wrapper_row(plan: Plan, arch: str, seed: int) -> dict[str, Any]:
    runs = {run: path for (a, run, s), path in plan.pcfg.items() if a == arch and s == seed}
    ft = read_json(runs["ft_low"] / "final_eval.json")
    ft_medium = read_json(runs["ft_medium"] / "final_eval.json")
    audit = read_json(runs["audit"] / AUDIT_FILE)
    evidence = audit["evidence"]
    revival = {k: read_json(runs[k] / "revival.json")["curve"] for k in ("rev_ft", "rev_control")}
    return {
        "arch": arch,
        "seed": seed,
        "pt_low_count_a": _final_eval(runs["pt_low"])[TARGET]["accuracy"],
        "pt_medium_count_a": _final_eval(runs["pt_medium"])[TARGET]["accuracy"],
        "pt_control_count_a": _final_eval(runs["pt_control"])[TARGET]["accuracy"],
        "ft_low_count_b": ft["count_b@cte0strict"]["accuracy"],
        "ft_low_count_a": ft["count_a@cte0"]["accuracy"],
        "ft_medium_count_a": ft_medium["count_a@cte0"]["accuracy"],
        "reverse_steps_ft": revival["rev_ft"]["steps_to_threshold"],
        "reverse_steps_control": revival["rev_control"]["steps_to_threshold"],
        "reverse_horizon_ft": revival["rev_ft"]["steps"][-1],
        "reverse_horizon_control": revival["rev_control"]["steps"][-1],
        "probe_pt": evidence.get("probe_pt"),
        "probe_ft": evidence.get("probe_ft"),
        "probe_reference": evidence.get("probe_reference"),
        "prune_best_report": max(evidence["prune_report"]) if evidence.get("prune_report") else None,
        "patch_restored": evidence.get("patch_restored"),
        "audit_label": audit["verdict"]["label"],
    }


def _job_seconds(results: list[JobResult]) -> dict[str, Any]:
    by_stage: dict[str, float] = defaultdict(float)
    for r in results:
        by_stage[r.key.split("/")[0]] += r.wall_s or 0.0
    return {"by_stage": dict(by_stage), "total": sum(by_stage.values())}


def collect(config: GAMStudyConfig, plan: Plan, results: list[JobResult], *, wall_seconds: float) -> dict:
    """The study's summary (every job must have finished)."""
    summary = {
        "study": STUDY,
        "schema_version": SCHEMA_VERSION,
        "config": to_dict(config),
        "models": plan.models,
        "paper": {
            "source": PAPER_SOURCE,
            "tinystories": PAPER_TINYSTORIES,
            "scaling": {str(k): v for k, v in PAPER_SCALING.items()},
        },
        "open_choices": [list(c) for c in OPEN_CHOICES],
        "throughput": _throughput(plan),
        "lm": _lm(plan, config.seeds),
        "receptive_field": _receptive_field(config, plan),
        "wrapper": [_wrapper_row(plan, arch, seed) for arch in ARCHS for seed in config.seeds],
        "jobs": _job_seconds(results),
        "wall_seconds": wall_seconds,
    }
    summary["findings"] = check_findings(summary)
    summary["perplexity"] = {
        arch: [math.exp(r[arch]["equal_steps_loss"]) for r in summary["lm"]["per_seed"]] for arch in ARCHS
    }
    return summary
