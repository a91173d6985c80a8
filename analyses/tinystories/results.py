"""``results.json`` of the TinyStories study: per setting, laid out like the study's Table 1 and Fig. 11.

Every number is read from the finished job directories; missing jobs are listed, not guessed. Each rate (a
generation score, a probe accuracy) is given for every seed, with that seed's Wilson 95% interval where it is a
count, then as a mean over seeds with a Student-t 95% interval (``over_seeds``): seeds are replicates, not extra
samples.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyses.paper_numbers import TINYSTORIES_TABLE1, TINYSTORIES_TABLE1_STEPS
from analyses.tinystories.config import CONTROL, LR_LEVELS, TinyStoriesStudyConfig, deletion_name
from analyses.tinystories.findings import findings
from analyses.tinystories.jobs import Plan
from interp.config import to_dict
from interp.jsonio import read_json
from interp.probing import split_indices
from interp.revival import RevivalCurve, revival_curve, speedup
from interp.stats import t_interval
from interp.sweeps import JobResult
from procedural_tasks.story_checkpoints import TOKENIZER_FILE
from procedural_tasks.story_data import build_story_splits
from procedural_tasks.story_scoring import feature_judges, judged_count
from procedural_tasks.story_tokenizer import StoryTokenizer

STUDY = "tinystories"  # results["study"]: what `ftmech report` dispatches on
SCHEMA_VERSION = 2  # of results.json; 2: every seed's value with a t-interval over seeds


@dataclass(frozen=True)
class _Runs:
    """The JSON summaries the finished jobs of one setting wrote, by the plan's keys."""

    analyses: dict[int, dict]  # seed -> analysis.json
    recoveries: dict[tuple[int, str], dict]  # (seed, row) -> recovery.json
    deletions: dict[tuple[int, str], dict]  # (seed, row) -> stage.json
    pretrains: dict[tuple[int, bool], dict]  # (seed, with_feature) -> stage.json


def _read_all(dirs: dict, name: str) -> dict:
    return {k: read_json(d / name) for k, d in dirs.items() if (d / name).is_file()}


def _read_runs(plan: Plan) -> _Runs:
    return _Runs(
        analyses=_read_all(plan.analysis, "analysis.json"),
        recoveries=_read_all(plan.recovery, "recovery.json"),
        deletions=_read_all(plan.deletion, "stage.json"),
        pretrains=_read_all(plan.pretrain, "stage.json"),
    )


def over_seeds(seeds: Sequence[int], values: Sequence[float], **per_seed: Sequence[Any]) -> dict:
    """A rate over seeds: every seed's value (and ``per_seed`` details), their mean and the Student-t 95%
    interval of the mean (clipped to [0, 1]; None for one seed)."""
    interval = t_interval(values)
    low, high = (None, None) if interval is None else (max(0.0, interval[0]), min(1.0, interval[1]))
    return {
        "seeds": list(seeds),
        "values": [float(v) for v in values],
        **{k: list(v) for k, v in per_seed.items()},
        "mean": float(np.mean(values)),
        "ci_low": low,
        "ci_high": high,
    }


def _scores_over_seeds(per_seed: dict[int, dict]) -> dict:
    """One judge's counts of each seed (``{seed: {k, n, ...}}``) over seeds, with each seed's Wilson interval."""
    seeds = sorted(per_seed)
    counts = [judged_count(per_seed[s]["k"], per_seed[s]["n"]).to_json() for s in seeds]
    return over_seeds(seeds, [c["rate"] for c in counts], counts=counts)


def _primary_judge(judges: Sequence[str]) -> str | None:
    """The strict rule where there is one (the loose rule is reported beside it); None where nothing judges."""
    if not judges:
        return None
    return "strict" if "strict" in judges else judges[0]


def study_rows(config: TinyStoriesStudyConfig) -> list[str]:
    """The recovery rows of Table 1: every deletion (kind x LR level), then the never-had-it control."""
    return [deletion_name(k, lvl) for k in config.deletion_kinds for lvl in config.lr_levels] + [CONTROL]


def _header(config: TinyStoriesStudyConfig, failed: list[str], wall_seconds: float) -> dict[str, Any]:
    judges = list(feature_judges(config.setting, config.feature))
    return {
        "setting": config.setting,
        "feature": config.feature,
        "config": to_dict(config),
        "wall_seconds": wall_seconds,
        "failed_jobs": failed,
        "judges": judges,
        "primary_judge": _primary_judge(judges),
        "lrs": {
            "pretrain": config.pretrain_lr,
            **{f"eta_{lvl}": config.lr(lvl) for lvl in LR_LEVELS},
            "recovery": config.lr(config.recovery_lr_level),
        },
    }


def _pretrained(config: TinyStoriesStudyConfig, runs: _Runs, judges: Sequence[str]) -> dict[str, Any]:
    """The pretrained model's score (per seed, then over seeds) and loss, and the never-had-it model's loss."""
    analyses = runs.analyses
    any_analysis = next(iter(analyses.values()))
    score = {
        j: _scores_over_seeds({s: analyses[s]["pretrained_score"]["judges"][j] for s in analyses})
        for j in judges
    }
    return {
        "n_params": any_analysis["n_params"],
        "splits": next(iter(runs.pretrains.values()))["splits"] if runs.pretrains else None,
        "pretrained": {
            "score": score,
            "feature_loss_per_seed": {s: analyses[s]["pretrained_feature_loss"] for s in analyses},
            "examples": any_analysis["pretrained_score"]["examples"],
        },
        "control_pretrained_feature_loss_per_seed": {
            s: runs.pretrains[s, False]["loss_curve"][-1]["feature_loss"]
            for s in config.seeds
            if (s, False) in runs.pretrains
        },
    }


def _table1(config: TinyStoriesStudyConfig, runs: _Runs, rows: Sequence[str], judges: Sequence[str]) -> dict:
    """Generation scores during recovery, per seed and over seeds, beside the study's printed Table 1."""
    steps = list(config.score_steps)
    table: dict[str, Any] = {
        "columns": steps,
        "study_columns": list(TINYSTORIES_TABLE1_STEPS),
        "study_percent_twist": {row: list(v) for row, v in TINYSTORIES_TABLE1.items()},
        "rows": {},
    }
    for row in rows:
        per_seed = {s: runs.recoveries[s, row]["scores"] for s in config.seeds if (s, row) in runs.recoveries}
        if not per_seed:
            continue
        scores = {
            str(step): {
                j: _scores_over_seeds({s: per_seed[s][str(step)]["judges"][j] for s in per_seed})
                for j in judges
            }
            for step in steps
        }
        table["rows"][row] = {
            "scores": scores,
            "examples_at_0": next(iter(per_seed.values()))["0"]["examples"],
        }
    return table


def _recovery_curves(config: TinyStoriesStudyConfig, runs: _Runs, rows: Sequence[str]) -> dict:
    """Fig. 11b: the feature-story loss during recovery, per row and seed."""
    curves = {}
    for row in rows:
        per_seed = [
            (s, runs.recoveries[s, row]["loss_curve"]) for s in config.seeds if (s, row) in runs.recoveries
        ]
        if per_seed:
            curves[row] = {
                "steps": [p["step"] for p in per_seed[0][1]],
                "per_seed": [[p["feature_loss"] for p in c] for _, c in per_seed],
                "seeds": [s for s, _ in per_seed],
            }
    return curves


def _score_revival(
    config: TinyStoriesStudyConfig, runs: _Runs, row: str, seed: int, primary: str
) -> RevivalCurve:
    """The primary judge's score during recovery against a fraction of the pretrained model's score."""
    ref_rate = runs.analyses[seed]["pretrained_score"]["judges"][primary]["rate"]
    scores = runs.recoveries[seed, row]["scores"]
    steps = list(config.score_steps)
    return revival_curve(
        f"{row} seed {seed}",
        steps,
        [scores[str(st)]["judges"][primary]["rate"] for st in steps],
        threshold=config.score_threshold_frac * ref_rate,
        horizon=config.recovery_steps,
    )


def _revival_entry(
    config: TinyStoriesStudyConfig, runs: _Runs, row: str, seed: int, primary: str | None
) -> dict:
    """Steps to the pretrained model's loss (x (1 + tolerance)) and to a fraction of its score (where a judge
    scores it), with the curves (under ``_loss_curve``/``_score_curve``) for the speed-ups against the control."""
    curve = runs.recoveries[seed, row]["loss_curve"]
    analysis = runs.analyses[seed]
    threshold = analysis["pretrained_feature_loss"] * (1 + config.loss_tolerance)
    loss_curve = revival_curve(
        f"{row} seed {seed}",
        [p["step"] for p in curve],
        [-p["feature_loss"] for p in curve],
        threshold=-threshold,
        horizon=config.recovery_steps,
    )
    entry: dict[str, Any] = {
        "loss": {
            "threshold": threshold,
            "steps_to_threshold": loss_curve.steps_to_threshold,
            "auc_neg_loss": loss_curve.auc,
            "start_loss": curve[0]["feature_loss"],
            "final_loss": curve[-1]["feature_loss"],
        },
        "_loss_curve": loss_curve,
    }
    if primary is not None:
        score_curve = _score_revival(config, runs, row, seed, primary)
        entry["score"] = {
            "threshold": score_curve.threshold,
            "steps_to_threshold": score_curve.steps_to_threshold,
        }
        entry["_score_curve"] = score_curve
    return entry


def _revival(config: TinyStoriesStudyConfig, runs: _Runs, rows: Sequence[str], primary: str | None) -> dict:
    """Per row and seed: how fast recovery reaches the pretrained model, and the speed-up over the control."""
    revival: dict[str, dict] = {}
    for row in rows:
        seeds = [s for s in config.seeds if (s, row) in runs.recoveries]
        if not seeds:
            continue
        revival[row] = {
            s: _revival_entry(config, runs, row, s, primary)
            for s in seeds
            if s in runs.analyses and runs.analyses[s]["pretrained_feature_loss"] is not None
        }
    for row in rows:
        if row == CONTROL or row not in revival:
            continue
        for s, entry in revival[row].items():
            control = revival.get(CONTROL, {}).get(s)
            if control is None:
                continue
            for measure in ("loss", "score") if primary is not None else ("loss",):
                gain = speedup(entry[f"_{measure}_curve"], control[f"_{measure}_curve"])
                entry[measure]["speedup_vs_control"] = gain.to_json()
    for entries in revival.values():
        for entry in entries.values():
            entry.pop("_loss_curve"), entry.pop("_score_curve", None)
    return revival


def _probe_rows(probes: dict, feature_index: int) -> list[dict]:
    """Per layer: held-out accuracy of one feature on ``n`` test stories."""
    rows = []
    for i, layer in enumerate(probes["layers"]):
        acc = layer["feature_accuracy"][feature_index]
        rows.append(
            {
                "layer": f"B{i}",
                "hook": layer["hook"],
                "accuracy": acc,
                "n": layer["n_test"],
                "control_accuracy": layer.get("control_accuracy"),
            }
        )
    return rows


def _probe_layer(per_seed: dict[int, list[dict]], li: int, layer: str) -> dict:
    """One block's held-out probe accuracy: every seed's (with its number of test stories), then over seeds."""
    seeds = sorted(per_seed)
    rows = [per_seed[s][li] for s in seeds]
    return {
        "layer": layer,
        **over_seeds(seeds, [r["accuracy"] for r in rows], n=[r["n"] for r in rows]),
        "control_task_accuracy": float(np.mean([r["control_accuracy"] for r in rows])),
    }


def _probe_model(analyses: dict[int, dict], name: str, features: list[str], feature_index: int) -> dict:
    """One model's probe accuracy per block: the study's feature per seed and over seeds, every feature's mean."""
    per_seed = {s: _probe_rows(analyses[s]["probes"][name], feature_index) for s in analyses}
    layers = [r["layer"] for r in next(iter(per_seed.values()))]
    layer_rows = {s: analyses[s]["probes"][name]["layers"] for s in analyses}
    return {
        "feature": [_probe_layer(per_seed, li, layer) for li, layer in enumerate(layers)],
        "all_features_mean_over_seeds": {
            f: [
                float(np.mean([layer_rows[s][li]["feature_accuracy"][j] for s in analyses]))
                for li in range(len(layers))
            ]
            for j, f in enumerate(features)
        },
        "majority_floor_all_features": analyses[next(iter(analyses))]["probes"][name]["layers"][0][
            "majority_floor"
        ],
    }


def probe_feature_floors(plan: Plan, seeds: Sequence[int]) -> dict:
    """The majority-class floor of the probed feature on each seed's held-out probe split.

    interp.probing reports one floor averaged over all features of a multi-label probe; this rebuilds the probe
    labels and the seeded split to give the floor of the one feature the study is about.
    """
    config = plan.config
    tokenizer = StoryTokenizer.load(plan.tokenizer / TOKENIZER_FILE)
    test = build_story_splits(config.data, tokenizer).test
    labels = np.array([config.feature in r.features for r in test])
    floors = []
    for seed in seeds:
        train_idx, test_idx = split_indices(len(labels), config.probe_test_frac, seed)
        majority = labels[train_idx].mean() >= 0.5
        floors.append(float((labels[test_idx] == majority).mean()))
    return {"seeds": list(seeds), "values": floors, "mean": float(np.mean(floors))}


def _fig11(plan: Plan, runs: _Runs, rows: Sequence[str]) -> dict:
    """Fig. 11: probe accuracy per block of every model (a) and the recovery loss curves (b)."""
    config, analyses = plan.config, runs.analyses
    any_analysis = next(iter(analyses.values()))
    features = any_analysis["features"]
    fi = features.index(config.feature)
    return {
        "probe_accuracy": {
            name: _probe_model(analyses, name, features, fi) for name in any_analysis["probes"]
        },
        "feature_majority_floor": probe_feature_floors(plan, sorted(analyses)),
        "recovery_loss": _recovery_curves(config, runs, rows),
        "probe_feature": config.feature,
        "n_probe_stories": any_analysis["n_probe_stories"],
    }


def _deletion(config: TinyStoriesStudyConfig, runs: _Runs, rows: Sequence[str], out: dict) -> dict:
    """Per deletion row with a recovery: each seed's feature loss before and after deletion (the scores before
    and after are the pretrained score and the row's Table 1 column 0)."""
    deletion = {}
    for row in rows[:-1]:
        seeds = [s for s in config.seeds if (s, row) in runs.deletions and s in runs.analyses]
        if not seeds or row not in out["table1"]["rows"]:
            continue
        deletion[row] = {
            "seeds": seeds,
            "feature_loss_before": [runs.analyses[s]["pretrained_feature_loss"] for s in seeds],
            "feature_loss_after": [runs.deletions[s, row]["loss_curve"][-1]["feature_loss"] for s in seeds],
        }
    return deletion


def collect_results(plan: Plan, results: Sequence[JobResult], *, wall_seconds: float) -> dict:
    """``results.json`` of one setting from the finished job directories (missing jobs are listed, not guessed)."""
    config = plan.config
    failed = [r.key for r in results if not r.ok and r.key.startswith(config.name + "/")]
    out = _header(config, failed, wall_seconds)
    runs = _read_runs(plan)
    if not runs.analyses or not runs.recoveries:
        out["complete"] = False
        return out
    rows = study_rows(config)
    primary = out["primary_judge"]
    out |= _pretrained(config, runs, out["judges"])
    out["table1"] = _table1(config, runs, rows, out["judges"])
    out["revival"] = _revival(config, runs, rows, primary)
    out["fig11"] = _fig11(plan, runs, rows)
    out["deletion"] = _deletion(config, runs, rows, out)
    out["findings"] = findings(out, config)
    out["complete"] = not failed
    return out


def study_results(
    summaries: dict[str, dict], results: Sequence[JobResult], *, wall_seconds: float, workers: int
) -> dict:
    """The top-level ``results.json``: every setting's results and where the time went."""
    by_stage: dict[str, float] = {}
    for r in results:
        stage = r.key.split("/")[1]
        by_stage[stage] = by_stage.get(stage, 0.0) + (r.wall_s or 0.0)
    return {
        "study": STUDY,
        "schema_version": SCHEMA_VERSION,
        "wall_seconds": wall_seconds,  # this invocation only (finished jobs are reused, not rerun)
        "job_seconds_total": sum(by_stage.values()),  # every job's own run time, cached ones included
        "job_seconds_by_stage": by_stage,
        "workers": workers,
        "settings": summaries,
    }
