"""Aggregate the PCFG study's run directories into ``results.json``: curves and final numbers over
seeds (mean, std, bootstrap CI), the study's Table 5 layout, revival metrics and speed-ups against the
controls, the mechanistic analyses, and checks of the study's claims measured on our numbers."""

import json
from pathlib import Path
from typing import Any

import numpy as np

from analyses.pcfg_study import setting_name
from interp.config import to_dict
from interp.revival import geometric_mean, revival_curve, speedup
from interp.stats import aggregate
from interp.sweeps import JobResult
from procedural_tasks.pcfg_protocols import lr_for_level, study_preset
from procedural_tasks.pcfg_tasks import PRIORS

EVAL_SETS = ("count_a@cte0", "count_a@cte1", "count_b@cte0", "count_b@cte1")
CONTROLS = ("Scr.+FT", "Scr.")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


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
        finals = [json.loads((r / "config.json").read_text())["metadata"] for r in runs]
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
            "final": {n: _agg([f[n]["accuracy"] for f in finals]) for n in EVAL_SETS} if finals else {},
            "shortcut_floor_b0": _agg([f["count_b@cte0"]["shortcut_floor"] for f in finals])
            if finals
            else None,
            "majority_floor_b0": _agg([f["count_b@cte0"]["majority_floor"] for f in finals])
            if finals
            else None,
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
                    speedup(model, ref).to_json() | {"control_steps": ref.steps_to_threshold}
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


FAST_SPEEDUP = 5.0  # "fast revival": at least this many times fewer steps than the Scr.+FT control


def _horizon(results: dict) -> int:
    """The reverse fine-tuning horizon: the last evaluated step of the revival curves."""
    return max(c["steps"][-1] for c in results["revival"]["curves"].values())


def _speed_status(item: dict, factor: float) -> str:
    """fast (speed-up >= factor), slow (never revived, or a measured speed-up below it), or censored (only a
    lower bound below it is known, because the control never reached the threshold)."""
    if item["value"] is None:
        return "slow"
    if item["value"] >= factor:
        return "fast"
    return "censored" if item["lower_bound"] else "slow"


def _faster_than_control(item: dict) -> bool:
    """Revived, and sooner than the control (which, when censored, had not revived by the horizon)."""
    return item["value"] is not None and (item["value"] > 1 or (item["lower_bound"] and item["value"] >= 1))


def _later(damaged: int | None, wrapped: int | None) -> bool | None:
    """Whether the eta_L model reached the threshold later than the eta_M model (None: both never did)."""
    if damaged is None:
        return None if wrapped is None else True
    return False if wrapped is None else damaged > wrapped


def _steps(value: int | None, horizon: int) -> str:
    return f">{horizon}" if value is None else str(value)


def _three_valued(statuses: list, *, want) -> bool | None:
    """True if every seed is ``want``; False if any seed is a definite counter-example; None (inconclusive)
    when the remaining seeds are censored."""
    if all(s == want for s in statuses):
        return True
    definite_other = [s for s in statuses if s not in (want, None, "censored")]
    return False if definite_other else None


def _findings(results: dict, config) -> list[dict]:
    """The study's claims checked on our numbers; each says what was measured and whether it held."""
    findings = []
    ft = {(r["prior"], r["lr_level"], r["c_tr"]): r for r in results["finetune"]}

    def mean(row, name):
        return row["final"].get(name, {}).get("mean") if row and row["final"] else None

    small = [k for k in ft if k[0] == "low" and k[2] == 1.0 and k[1] in ("S", "M")]
    for key in small:
        row = ft[key]
        b1, b0, a0 = mean(row, "count_b@cte1"), mean(row, "count_b@cte0"), mean(row, "count_a@cte0")
        if b1 is None:
            continue
        floor = row["shortcut_floor_b0"]["mean"]
        findings.append(
            {
                "claim": f"wrapper signature ({row['name']}): O_FT >= 90% at C_Te=1 but <= 30% at C_Te=0",
                "measured": f"O_FT@C_Te=1 {b1:.1%}, O_FT@C_Te=0 {b0:.1%} (shortcut floor {floor:.1%})",
                "holds": bool(b1 >= 0.9 and b0 <= 0.3),
            }
        )
        pt_a0 = results["pretrain"]["low"]["final"]["count_a@cte0"]["mean"]
        findings.append(
            {
                "claim": f"behavioural loss of O_PT ({row['name']}): count-a accuracy at C_Te=0 collapses",
                "measured": f"O_PT@C_Te=0 {a0:.1%} after fine-tuning vs {pt_a0:.1%} pretrained",
                "holds": bool(a0 <= 0.5 * pt_a0),
            }
        )
    steps = {n: v.get("steps_to_threshold") for n, v in results["revival"]["metrics"].items()}
    horizon = _horizon(results)
    note = f"; '>=': the control never reached the threshold in {horizon} steps (a lower bound)"
    for name, vs in results["revival"]["speedups"].items():
        s = vs.get("Scr.+FT")
        if not s:
            continue
        measured = "speed-up per seed: " + ", ".join(
            "not revived" if i["value"] is None else f"{'>=' if i['lower_bound'] else ''}{i['value']:.1f}x"
            for i in s["per_seed"]
        )
        statuses = [_speed_status(i, FAST_SPEEDUP) for i in s["per_seed"]]
        if "eta_L" not in name:
            findings.append(
                {
                    "claim": f"fast revival ({name}): reverse FT reaches the threshold >= {FAST_SPEEDUP:g}x faster than Scr.+FT",
                    "measured": measured + note,
                    "holds": _three_valued(statuses, want="fast"),
                }
            )
            findings.append(
                {
                    "claim": f"revival ({name}): reverse FT reaches the threshold sooner than Scr.+FT in every seed",
                    "measured": measured + note,
                    "holds": all(_faster_than_control(i) for i in s["per_seed"]),
                }
            )
            continue
        # The study: after eta_L the capability is truly damaged, so no fast revival.
        findings.append(
            {
                "claim": f"damage at eta_L ({name}): reverse FT does NOT revive >= {FAST_SPEEDUP:g}x faster than Scr.+FT",
                "measured": measured + note,
                "holds": _three_valued(statuses, want="slow"),
            }
        )
        ref = next((n for n in steps if "eta_M" in n and n.startswith("FT(low")), None)
        if ref is not None and steps[name] is not None and steps[ref] is not None:
            pairs = list(zip(steps[name], steps[ref], strict=True))
            findings.append(
                {
                    "claim": f"damage at eta_L: revival after eta_L is slower than after eta_M ({ref}) in every seed",
                    "measured": "steps to threshold per seed, eta_L vs eta_M: "
                    + ", ".join(f"{_steps(d, horizon)} vs {_steps(w, horizon)}" for d, w in pairs),
                    "holds": _three_valued([_later(d, w) for d, w in pairs], want=True),
                }
            )
    m = results["revival"]["metrics"]
    low, med = m.get("FT(low, eta_M, C_Tr=1)"), m.get("FT(medium, eta_M, C_Tr=1)")
    if low and med and low.get("auc_agg") and med.get("auc_agg"):
        findings.append(
            {
                "claim": "ordering: the higher prior revives faster than the low prior (larger log-step AUC)",
                "measured": f"AUC medium {med['auc_agg']['mean']:.3f} vs low {low['auc_agg']['mean']:.3f}",
                "holds": bool(med["auc_agg"]["mean"] > low["auc_agg"]["mean"]),
            }
        )
    return findings


def collect_results(config, plan, job_results: list[JobResult], *, wall_seconds: float) -> dict:
    """Everything the report shows, as JSON-native data."""
    results: dict[str, Any] = {
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
    analysis = {seed: _read_json(path / "analysis.json") for seed, path in plan.analysis.items()}
    if analysis:
        from analyses.pcfg_analysis import aggregate_analysis

        loaded = [a for a in analysis.values() if a]
        if loaded:
            results["analysis"] = aggregate_analysis(loaded, results["revival"])
    results["findings"] = _findings(results, config)
    results["job_wall_seconds"] = float(np.nansum([r.wall_s or np.nan for r in job_results]))
    return results
