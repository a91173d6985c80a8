"""The study's Tracr claims checked against the measured numbers: each finding says what was claimed, what
this run measured, and whether it held (computed from the numbers; None where it cannot be decided)."""

from typing import Any

import numpy as np

from analyses.tracr.config import CONTROL, TracrStudyConfig
from interp.lr_levels import LEVELS
from procedural_tasks.tracr_batches import eval_name


def findings(
    config: TracrStudyConfig,
    attention: list,
    pruning: list,
    reverse: dict,
    table: list,
    long: dict | None = None,
) -> list[dict]:
    """Each of the study's Tracr claims that this run's numbers can speak to, in the study's order."""
    claims = (
        _counting_head(attention),
        _single_weight_pruning(pruning),
        _reverse_revival(config, reverse),
        _long_arm(long or {}),
        _max_identifier_learns(table),
    )
    return [claim for claim in claims if claim is not None]


def _level_order(level: str, c_tr: float) -> tuple[int, float]:
    return LEVELS.index(level), c_tr


def _counting_head(attention: list) -> dict[str, Any] | None:
    """(a) Where Counter's counting head attends after fine-tuning, per eta x C_Tr."""
    att = {(r["program"], r["lr_level"], r["c_tr"]): r for r in attention if r["program"] == "counter"}
    if not att:
        return None
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
        for k, r in sorted(att.items(), key=lambda kv: _level_order(kv[0][1], kv[0][2]))
    )
    return {
        "claim": "(a) Counter: with a small LR, or C_Tr = 1, the counting head keeps attending to a "
        "(a wrapper); eta_M with C_Tr = 0 moves it to b",
        "measured": f"block-1 attention mass from the answer position (compiled+noise: a {start_a:.2f}); {measured}",
        "parts": {
            "keeps_a_small_lr_or_ctr1": bool(all(kept)) if kept else None,
            "eta_M_ctr0_moves_to_b": moved,
        },
        "held": bool(all(kept)) and bool(moved) if kept and moved is not None else None,
    }


def _single_weight_pruning(pruning: list) -> dict[str, Any] | None:
    """(b) Count-a accuracy regained by pruning single weights after fine-tuning on correlated data."""
    prune = {(r["program"], r["lr_level"], r["c_tr"]): r for r in pruning if r["program"] == "counter"}
    corr = [prune[k] for k in (("counter", "M", 1.0), ("counter", "S", 1.0)) if k in prune]
    if not corr:
        return None
    gains = [r["gain_k1"]["mean"] for r in corr if r["gain_k1"]]
    measured = "; ".join(
        f"eta_{r['lr_level']} C_Tr={r['c_tr']:g}: K=1 {r['gain_k1']['mean']:+.1f} pts, "
        f"K<=4 {r['gain_k4']['mean']:+.1f}, K<={r['ks'][-1]} {r['gain_k_max']['mean']:+.1f}"
        for r in sorted(prune.values(), key=lambda r: _level_order(r["lr_level"], r["c_tr"]))
        if r["gain_k1"]
    )
    return {
        "claim": "(b) Counter: pruning a single weight raises count-a accuracy by >60 points after "
        "fine-tuning on correlated data (eta_M, eta_S)",
        "measured": f"gain in Acc O_PT (C_Te=0) over the unpruned model, mean over seeds: {measured}",
        "held": bool(gains) and all(g > 60.0 for g in gains),
    }


def _reverse_revival(config: TracrStudyConfig, reverse: dict) -> dict[str, Any] | None:
    """(c) Reverse fine-tuning at eta_VS revives count a after eta_M but not after eta_L."""
    after_m, after_l = reverse.get("after eta_M"), reverse.get("after eta_L")
    if not (after_m and after_l):
        return None
    ctrl = reverse.get(CONTROL, {})
    extra = "".join(
        f"; {name} (extra arm) {arm['n_revived']}/{arm['n_runs']} (steps {arm['steps_to_threshold']})"
        for name, arm in reverse.items()
        if name not in ("after eta_M", "after eta_L", CONTROL)
    )
    return {
        "claim": "(c) Counter: reverse fine-tuning at eta_VS = 1e-4 revives count a after eta_M "
        "fine-tuning but not after eta_L",
        "measured": (
            f"revived (Acc O_PT >= {config.reverse_threshold:g} within {config.reverse_steps} steps): "
            f"after eta_M {after_m['n_revived']}/{after_m['n_runs']} (steps {after_m['steps_to_threshold']}), "
            f"after eta_L {after_l['n_revived']}/{after_l['n_runs']} (steps {after_l['steps_to_threshold']}), "
            f"{CONTROL} {ctrl.get('n_revived')}/{ctrl.get('n_runs')} (steps {ctrl.get('steps_to_threshold')})"
            + extra
        ),
        "held": after_m["n_revived"] * 2 > after_m["n_runs"]
        and after_l["n_revived"] * 2 <= after_l["n_runs"],
    }


def _long_arm(long: dict) -> dict[str, Any] | None:
    """(a, longer arm) eta_L / eta_M with C_Tr = 0 learn to count b and move the counting head to b."""
    long_att = {(r["lr_level"], r["c_tr"]): r for r in long.get("attention", [])}
    long_tab = {(r["lr_level"], r["c_tr"]): r for r in long.get("table3", [])}
    if not (long_att and long_tab):
        return None
    parts = {}
    texts = []
    for key in sorted(long_att, key=lambda k: _level_order(*k)):
        a, t = long_att[key]["finetuned"], long_tab[key]["cells"]
        ft0 = t[eval_name("ft", 0)]["mean"] if t[eval_name("ft", 0)] else float("nan")
        texts.append(
            f"eta_{key[0]} C_Tr={key[1]:g}: Acc O_FT(C_Te=0) {ft0:.1f}%, attention a {a['o_pt']['mean']:.2f} b {a['o_ft']['mean']:.2f}"
        )
        if key[1] == 0.0:
            parts[f"eta_{key[0]}_ctr0_counts_b"] = ft0 >= 90.0
            parts[f"eta_{key[0]}_ctr0_attends_b"] = a["o_ft"]["mean"] > a["o_pt"]["mean"]
    return {
        "claim": f"(a, {long['steps']} steps) eta_L / eta_M with C_Tr = 0 learn to count b (Tab. 3: 100% / 98.8%) "
        "and eta_M moves the counting head to b (Fig. 10)",
        "measured": "; ".join(texts),
        "parts": parts,
        "held": parts.get("eta_M_ctr0_attends_b"),
    }


def _max_identifier_learns(table: list) -> dict[str, Any] | None:
    """(d) Max-identifier at eta_VS learns the fine-tuning task."""
    vs = [r for r in table if r["program"] == "max_identifier" and r["lr_level"] == "VS"]
    if not vs or not all(r["cells"][eval_name("ft", 0)] for r in vs):
        return None
    means = {r["c_tr"]: r["cells"][eval_name("ft", 0)]["mean"] for r in vs}
    return {
        "claim": "(d) Max-identifier: eta_VS learns the fine-tuning task (paper: Acc O_FT at C_Te=0 "
        "91.1% / 88.6% for C_Tr = 0 / 1)",
        "measured": "Acc O_FT at C_Te=0: "
        + ", ".join(f"C_Tr={c:g}: {m:.1f}%" for c, m in sorted(means.items())),
        "held": all(m >= 80.0 for m in means.values()),
    }
