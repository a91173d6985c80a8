"""Aggregate the PCFG study's run directories into ``results.json``: curves and final numbers over
seeds (mean, std, Student-t CI), the study's Table 5 layout, revival metrics and speed-ups against the
controls, the mechanistic analyses, and checks of the study's claims measured on our numbers."""

import json
from pathlib import Path
from typing import Any

import numpy as np

from analyses.pcfg.analysis import PROBES, aggregate_analysis, seed_analysis
from analyses.pcfg.config import setting_name
from analyses.pcfg.findings import findings
from interp.config import to_dict
from interp.jsonio import read_json
from interp.lr_levels import lr_for_level
from interp.revival import geometric_mean, revival_curve, speedup
from interp.stats import aggregate
from interp.sweeps import JobResult
from procedural_tasks.pcfg_protocols import study_preset
from procedural_tasks.pcfg_tasks import PRIORS

EVAL_SETS = ("count_a@cte0", "count_a@cte1", "count_b@cte0", "count_b@cte1")
FINAL_SETS = (*EVAL_SETS, "count_a@cte0strict", "count_b@cte0strict")  # strict: the study's C_Te = 0
CONTROLS = ("Scr.+FT", "Scr.")
STUDY = "pcfg"  # results.json's "study": what `ftmech report` dispatches on
SCHEMA_VERSION = 1  # of results.json; bumped when a field changes meaning


def _read_json(path: Path) -> Any:
    """The JSON at ``path``, or None where that run has not written it (yet)."""
    return read_json(path) if path.is_file() else None


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _curves(runs: list[Path], names: tuple[str, ...]) -> dict[str, dict]:
    """Per eval set: the common steps and one accuracy list per seed."""
    per_run = [_metrics(r) for r in runs]
    per_run = [m for m in per_run if m]
    if not per_run:
        return {}
    steps = [row["step"] for row in per_run[0]]
    out = {}
    for name in names:
        seeds = [[row["eval"][name]["accuracy"] for row in m if name in row["eval"]] for m in per_run]
        if all(len(s) == len(steps) for s in seeds):
            out[name] = {"steps": steps, "per_seed": seeds}
    return out


def _agg(values: list[float]) -> dict:
    return aggregate(values) | {"values": values}


def _pretrain_results(config, plan) -> dict:
    out = {}
    for prior in (*config.priors, config.control_prior):
        runs = [
            plan.pretrain[s, prior]
            for s in config.seeds
            if (plan.pretrain[s, prior] / "model.safetensors").is_file()
        ]
        finals = [read_json(r / "config.json")["metadata"] for r in runs]
        out[prior] = {
            "final": {n: _agg([f["final_eval"][n]["accuracy"] for f in finals]) for n in EVAL_SETS}
            if finals
            else {},
            "curves": _curves(runs, EVAL_SETS),
            "wall_seconds": _agg([f["wall_seconds"] for f in finals]) if finals else None,
        }
    return out


def _finetune_results(config, plan) -> list[dict]:
    rows = []
    for setting in config.finetune_grid:
        prior, level, c_tr = setting
        runs = [plan.finetune[s, setting] for s in config.seeds]
        finals = [f for f in (_read_json(r / "final_eval.json") for r in runs) if f]
        row = {
            "prior": prior,
            "prior_values": list(PRIORS[prior]),
            "lr_level": level,
            "lr": lr_for_level(level, config.pretrain_lr, config.lr_labelling),
            "c_tr": c_tr,
            "name": f"{prior} / eta_{level} / C_Tr={c_tr:g}",
            "final": {
                n: _agg([f[n]["accuracy"] for f in finals])
                for n in FINAL_SETS
                if finals and all(n in f for f in finals)
            },
            **{
                f"{kind}_floor_{short}": _agg([f[name][f"{kind}_floor"] for f in finals]) if finals else None
                for kind, short, name in (
                    ("shortcut", "b0", "count_b@cte0"),
                    ("majority", "b0", "count_b@cte0"),
                    ("majority", "a0", "count_a@cte0"),
                )
            },
            "curves": _curves([r for r in runs if (r / "metrics.jsonl").is_file()], EVAL_SETS),
        }
        rows.append(row)
    return rows


def _revival_results(config, plan) -> dict:
    names = [setting_name(s) for s in config.reverse_from] + list(CONTROLS)
    curves, metrics, speedups = {}, {}, {}
    per_seed_curves: dict[str, dict[int, Any]] = {n: {} for n in names}
    for name in names:
        for seed in config.seeds:
            data = _read_json(plan.reverse[seed, name] / "revival.json")
            if data:
                per_seed_curves[name][seed] = data
        loaded = list(per_seed_curves[name].values())
        if not loaded:
            continue
        curves[name] = {
            "steps": loaded[0]["curve"]["steps"],
            "per_seed": [d["curve"]["values"] for d in loaded],
        }
    # Each fine-tuned model is compared with the controls at its own threshold, per seed.
    for setting in config.reverse_from:
        name = setting_name(setting)
        stats: dict[str, Any] = {"steps_to_threshold": [], "auc": [], "threshold": []}
        versus: dict[str, list] = {c: [] for c in CONTROLS}
        for seed, data in per_seed_curves[name].items():
            c = data["curve"]
            model = revival_curve(
                name, c["steps"], c["values"], threshold=c["threshold"], horizon=c["horizon"]
            )
            stats["steps_to_threshold"].append(model.steps_to_threshold)
            stats["auc"].append(model.auc)
            stats["threshold"].append(model.threshold)
            for control in CONTROLS:
                ctrl = per_seed_curves[control].get(seed)
                if ctrl is None:
                    continue
                cc = ctrl["curve"]
                ref = revival_curve(
                    control, cc["steps"], cc["values"], threshold=model.threshold, horizon=cc["horizon"]
                )
                versus[control].append(
                    speedup(model, ref).to_json()
                    | {"steps": model.steps_to_threshold, "control_steps": ref.steps_to_threshold}
                    | {"horizon": model.horizon, "control_horizon": ref.horizon}
                )
        metrics[name] = stats | {"auc_agg": _agg(stats["auc"]) if stats["auc"] else None}
        speedups[name] = {c: _speedup_summary(v) for c, v in versus.items() if v}
    for control in CONTROLS:
        loaded = list(per_seed_curves[control].values())
        if loaded:
            metrics[control] = {"auc_agg": _agg([d["curve"]["auc"] for d in loaded])}
    return {
        "threshold_frac": config.threshold_frac,
        "curves": curves,
        "metrics": metrics,
        "speedups": speedups,
    }


def _speedup_summary(items: list[dict]) -> dict:
    values = [i["value"] for i in items if i["value"] is not None]
    complete = bool(values) and len(values) == len(items)
    return {
        "per_seed": items,
        "geometric_mean": geometric_mean(values) if complete and min(values) > 0 else None,
        "min": min(values) if complete else None,
        "any_lower_bound": any(i["lower_bound"] for i in items),
        "n_not_revived": sum(i["value"] is None for i in items),
    }


def _seed_analysis(dirs: dict[str, Path]) -> dict | None:
    """One seed's analysis, or None until its probes job and every per-model job have written their files."""
    probes = _read_json(dirs[PROBES] / "probes.json")
    models = [_read_json(d / "model_analysis.json") for name, d in dirs.items() if name != PROBES]
    return seed_analysis(probes, models) if probes and all(models) else None


def collect_results(config, plan, job_results: list[JobResult], *, wall_seconds: float) -> dict:
    """Everything the report shows, as JSON-native data."""
    results: dict[str, Any] = {
        "study": STUDY,
        "schema_version": SCHEMA_VERSION,
        "config": to_dict(config),
        "preset": to_dict(study_preset(config.preset)),
        "wall_seconds": wall_seconds,
        "jobs": [
            {"key": r.key, "status": r.status, "wall_s": r.wall_s, "error": r.error} for r in job_results
        ],
        "pretrain": _pretrain_results(config, plan),
        "finetune": _finetune_results(config, plan),
        "revival": _revival_results(config, plan),
    }
    loaded = [a for a in map(_seed_analysis, plan.analysis.values()) if a]
    if loaded:
        results["analysis"] = aggregate_analysis(loaded, results["revival"])
    results["findings"] = findings(results)
    results["job_wall_seconds"] = float(np.nansum([r.wall_s or np.nan for r in job_results]))
    results["pretrain_ms_per_step"] = _pretrain_ms_per_step(plan, job_results)
    return results


def _pretrain_ms_per_step(plan, job_results: list[JobResult]) -> float | None:
    """The pretraining jobs' run time per training step (their evaluations included): this machine's speed, by
    which wall times of runs on different machines, or in different hours, compare."""
    pretrain = {str(d) for d in plan.pretrain.values()}
    steps = {j.key: j.steps for j in plan.jobs if str(j.out_dir) in pretrain}
    timed = [(r.wall_s, steps[r.key]) for r in job_results if r.key in steps and r.wall_s]
    if not timed:
        return None
    return 1000 * sum(wall for wall, _ in timed) / sum(n for _, n in timed)
