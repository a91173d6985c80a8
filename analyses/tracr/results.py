"""Aggregating the Tracr study's job outputs into ``results.json``: the Table-3 analogue beside the paper,
attention, pruning and localisation summaries, the revival curves of reverse fine-tuning with speed-ups over
the control, the compiled baselines, and the findings. Pure functions of the files the jobs wrote."""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyses.paper_numbers import TRACR_TABLE3
from analyses.tracr.config import CONTROL, TracrStudyConfig
from analyses.tracr.findings import findings
from interp.config import to_dict
from interp.jsonio import read_json
from interp.revival import RevivalCurve, geometric_mean, speedup
from interp.stats import aggregate
from interp.sweeps import Job, JobResult
from procedural_tasks.tracr_analysis import ANALYSIS
from procedural_tasks.tracr_batches import eval_name
from procedural_tasks.tracr_finetuning import SUMMARY, finetune_lr

STUDY = "tracr"  # results.json's "study": what `ftmech report` dispatches on
SCHEMA_VERSION = 2  # of results.json; bumped when a field changes meaning (2: Student-t CIs, per-seed values)
CELLS = (eval_name("pt", 1), eval_name("ft", 1), eval_name("pt", 0), eval_name("ft", 0))  # Tab. 3's order


def _read_optional(path: Path) -> Any:
    """The JSON at ``path``, or None where that job has not written it."""
    return read_json(path) if path.is_file() else None


def _agg(values: Sequence[float], scale: float = 1.0) -> dict[str, Any] | None:
    """Mean, std and Student-t 95% CI over the finite values (``interp.stats.aggregate``)."""
    values = [v * scale for v in values if v is not None and math.isfinite(v)]
    return aggregate(values) if values else None


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def load_runs(jobs: Sequence[Job], results: Sequence[JobResult]) -> list[dict[str, Any]]:
    """One record per fine-tuning job: its grid point, status, history and analysis (None when missing)."""
    status = {r.key: r for r in results}
    runs = []
    for job in jobs:
        if job.fn.rpartition(":")[2] != "job_finetune":
            continue
        ft = job.kwargs["finetune"]
        summary = _read_optional(Path(job.out_dir) / SUMMARY)
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
                "analysis": _read_optional(Path(job.out_dir) / ANALYSIS),
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
    """Tab. 3's layout: per program x eta x C_Tr, Acc O_PT / O_FT at C_Te = 1 and 0 (%, every seed's value,
    and their mean and Student-t CI with diverged runs excluded and counted), beside the paper's cell."""
    rows = []
    for (program, level, c_tr), group in _groups(runs).items():
        ok = [r for r in group if r["status"] == "ok"]
        lr = finetune_lr(level)
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
                "per_seed": _per_seed(group),
                "paper": dict(zip(CELLS, paper, strict=True)) if paper else None,
            }
        )
    return rows


def _per_seed(group: Sequence[dict]) -> list[dict[str, Any]]:
    """Every seed's status, final Tab. 3 cells (%), and the wrapper floor of O_FT at C_Te = 0 (%) with the
    number of inputs it was measured on."""
    out = []
    for run in sorted(group, key=lambda r: r["seed"]):
        ft0 = run["history"][-1]["eval"][eval_name("ft", 0)] if run["history"] else {}
        out.append(
            {
                "seed": run["seed"],
                "status": run["status"],
                "cells": {cell: _pct(run["final_accuracy"].get(cell)) for cell in CELLS},
                "wrapper_floor_o_ft_cte0": _pct(ft0.get("shortcut_floor")),
                "n_eval": ft0.get("n"),
            }
        )
    return out


def attention_summary(runs: Sequence[dict]) -> list[dict[str, Any]]:
    """Attention mass of the counting/read head from the answer position onto O_PT / O_FT / BOS keys."""
    rows = []
    for (program, level, c_tr), group in _groups(runs).items():
        seeds = [r["seed"] for r in group if r["analysis"]]
        done = [r["analysis"] for r in group if r["analysis"]]
        if not done:
            continue
        layer = done[0]["attention"]["layer"]
        row: dict[str, Any] = {"program": program, "lr_level": level, "c_tr": c_tr, "layer": layer}
        mass = {
            which: {
                g: [a["attention"][which][g][layer] for a in done] for g in ("o_pt", "o_ft", "bos", "other")
            }
            for which in ("start", "finetuned")
        }
        for which, groups in mass.items():
            row[which] = {g: _agg(values) for g, values in groups.items()}
        row["per_seed"] = [
            {"seed": seed, **{which: {g: v[i] for g, v in groups.items()} for which, groups in mass.items()}}
            for i, seed in enumerate(seeds)
        ]
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
                "seeds": [r["seed"] for r in group if r["analysis"]],
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
    status = {r.key: r for r in results}
    arms: dict[str, dict[int, dict]] = {}
    for job in jobs:
        if job.fn.rpartition(":")[2] != "job_reverse_ft":
            continue
        seed = job.kwargs["reverse"]["train"]["seed"]
        summary = _read_optional(Path(job.out_dir) / SUMMARY)
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
    control = arms.get(CONTROL, {})
    out: dict[str, Any] = {}
    for name, per_seed in arms.items():
        curves = {s: e["revival"] for s, e in per_seed.items() if e["revival"]}
        speedups = []
        for seed, curve in curves.items():
            ctrl = control.get(seed, {}).get("revival")
            if ctrl and name != CONTROL:
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
    return {
        "study": STUDY,
        "schema_version": SCHEMA_VERSION,
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
        "baselines": {
            job.kwargs["program"]: _read_optional(Path(job.out_dir) / "baseline.json")
            for job in jobs
            if job.fn.endswith(":job_baseline")
        },
        "findings": findings(config, attention, pruning, reverse, table, long_horizon),
        "curves": _curves(all_runs),
        "attention_maps": {
            r["key"]: r["analysis"]["attention_map"]
            for r in all_runs
            if r["analysis"] and r["seed"] == min(config.seeds)
        },
    }


def _curves(runs: Sequence[dict]) -> dict[str, dict[str, list]]:
    """Each run's evaluation steps and the accuracy of every Tab. 3 cell at them."""
    return {
        r["key"]: {
            "steps": [h["step"] for h in r["history"]],
            **{cell: [h["eval"][cell]["accuracy"] for h in r["history"]] for cell in CELLS},
        }
        for r in runs
        if r["history"]
    }
