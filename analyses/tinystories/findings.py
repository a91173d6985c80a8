"""The TinyStories study's claims, each with its numbers and whether it held here (criteria fixed in advance).

A finding's ``held`` is True, False, or None where the data cannot decide it ("not measurable").
"""

import numpy as np

from analyses.tinystories.config import CONTROL, PRETRAINED, TinyStoriesStudyConfig


def _deletion_finding(row: str, deletion: dict, before: dict, primary: str) -> dict:
    after = deletion["score_after"][primary]
    return {
        "claim": f"deletion {row} drives the generation score down",
        "criterion": "Wilson 95% CI of the deleted model's score (pooled over seeds) lies below the pretrained model's",
        "pretrained": before,
        "deleted": after,
        "loss_before_mean": float(np.mean(deletion["feature_loss_before"])),
        "loss_after_mean": float(np.mean(deletion["feature_loss_after"])),
        "held": after["ci_high"] < before["ci_low"],
    }


def _loss_recovery_finding(row: str, revival: dict) -> dict:
    """Recovery from ``row`` reaches the pretrained loss in fewer steps than the control, seed by seed."""
    ctrl = revival.get(CONTROL, {})
    per_seed = []
    for s, entry in revival.get(row, {}).items():
        c = ctrl.get(s)
        if c is None:
            continue
        mine, theirs = entry["loss"]["steps_to_threshold"], c["loss"]["steps_to_threshold"]
        per_seed.append(
            {
                "seed": s,
                "steps_to_loss_threshold": mine,
                "control_steps": theirs,
                "control_censored": theirs is None,
                "faster": mine is not None and (theirs is None or mine < theirs),
                "speedup": entry["loss"].get("speedup_vs_control"),
            }
        )
    # A deleted model already within the loss tolerance at step 0 has nothing to recover by this measure.
    vacuous = [p["seed"] for p in per_seed if p["steps_to_loss_threshold"] == 0]
    return {
        "claim": f"recovery after {row} is faster than the never-had-it control (feature loss)",
        "criterion": (
            "every seed reaches the pretrained model's feature loss x (1 + tolerance) in fewer recovery "
            "steps than the control of the same seed (a control that never reaches it counts as slower); "
            "not measurable where the deletion left the loss within the tolerance"
        ),
        "per_seed": per_seed,
        "not_measurable_seeds": vacuous,
        "held": None if vacuous or not per_seed else all(p["faster"] for p in per_seed),
    }


def _score_recovery_finding(row: str, table: dict, steps: list[str], primary: str, deleted: bool) -> dict:
    """After R/10 recovery steps from ``row`` the score is above the control's (pooled Wilson intervals)."""
    control_rows = table.get(CONTROL)
    early = {}
    for step in steps[1:3]:
        mine, theirs = table[row]["pooled"][step][primary], control_rows["pooled"][step][primary]
        early[step] = {"recovered": mine, "control": theirs, "higher": mine["ci_low"] > theirs["ci_high"]}
    r10 = steps[2]
    return {
        "claim": f"after {r10} recovery steps from {row} the generation score is above the control's",
        "criterion": (
            f"pooled Wilson 95% CI of the score at step {r10} lies above the never-had-it control's; "
            "not measurable where the deletion did not lower the score"
        ),
        "score_at_R/100_and_R/10": early,
        "held": early[r10]["higher"] if deleted else None,
    }


def _probe_finding(row: str, probes: dict, summary: dict, feature: str) -> dict:
    """After deletion ``row`` the feature probe still reads more than the never-had-it model's."""
    layers_above = [
        r["layer"]
        for r, c in zip(probes[row]["feature"], probes[CONTROL]["feature"], strict=True)
        if r["ci_low"] > c["ci_high"]
    ]
    drop = [
        p["accuracy"] - d["accuracy"]
        for p, d in zip(probes[PRETRAINED]["feature"], probes[row]["feature"], strict=True)
    ]
    return {
        "claim": f"after {row} the {feature} probe stays above the never-had-it model's",
        "criterion": "at some block the deleted model's probe accuracy CI lies above the control's (pooled Wilson 95%)",
        "layers_above_control": layers_above,
        "pretrained_minus_deleted_per_layer": drop,
        "summary": {k: summary[k] for k in (PRETRAINED, row, CONTROL)},
        "held": bool(layers_above),
    }


def _floor_finding(probes: dict, floor: dict, summary: dict, feature: str) -> dict:
    above = [r["layer"] for r in probes[PRETRAINED]["feature"] if r["ci_low"] > floor["pooled"]]
    return {
        "claim": f"the pretrained model's {feature} probe reads the feature above its majority floor",
        "criterion": "at some block the pooled Wilson 95% CI of the pretrained model's probe lies above the floor",
        "majority_floor": floor["pooled"],
        "layers_above_floor": above,
        "best_layer": summary[PRETRAINED]["best_layer"],
        "held": bool(above),
    }


def findings(res: dict, config: TinyStoriesStudyConfig, primary: str) -> list[dict]:
    """The study's three claims (deletion lowers the score; recovery is faster than the control; the probe still
    reads the feature), each per deletion row, then the probe's floor check."""
    table = res["table1"]["rows"]
    before = res["pretrained"]["score"][primary]
    steps = [str(s) for s in config.score_steps]
    out = [_deletion_finding(row, d, before, primary) for row, d in res["deletion"].items()]
    deleted = {f_row: f["held"] for f_row, f in zip(res["deletion"], out, strict=True)}
    for row in res["deletion"]:
        out.append(_loss_recovery_finding(row, res["revival"]))
        out.append(_score_recovery_finding(row, table, steps, primary, deleted[row]))
    probes = res["fig11"]["probe_accuracy"]
    summary = {
        name: {
            "mean_over_layers": float(np.mean([r["accuracy"] for r in p["feature"]])),
            "best_layer": max(p["feature"], key=lambda r: r["accuracy"]),
        }
        for name, p in probes.items()
    }
    for row in res["deletion"]:
        if row in probes and CONTROL in probes:
            out.append(_probe_finding(row, probes, summary, config.feature))
    out.append(_floor_finding(probes, res["fig11"]["feature_majority_floor"], summary, config.feature))
    return out
