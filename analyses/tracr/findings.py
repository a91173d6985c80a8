"""The study's Tracr claims checked on our numbers, every seed on its own.

Each seed (and setting) of a claim comes out ``held``, ``did not hold``, ``inconclusive`` (the numbers cannot
decide, e.g. a revival censored by the horizon) or ``not testable`` (the claim's premise fails in this run,
e.g. the model never learned the fine-tuning task; the note says which). A finding holds only if it held on
every seed; one seed that did not hold makes it fail; all seeds untestable make it not testable; any other
mix is inconclusive. "No better than the wrapper" is measured: at most the upper end of the Wilson 95% CI of
the shortcut floor (the accuracy of answering r(x, O_PT) + q) on the same inputs.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from analyses.tracr.config import CONTROL, TracrStudyConfig
from interp.lr_levels import LEVELS
from interp.stats import accuracy_ci
from procedural_tasks.tracr_batches import eval_name

HELD, FAILED, INCONCLUSIVE, UNTESTABLE = "held", "did not hold", "inconclusive", "not testable"
LEARNED = 0.9  # a task is learned at this accuracy or more (the study's cells: 94-100%)
MAX_ID_LEARNED = 0.8  # Max-identifier at eta_VS (the study: 88.6% and 91.1%)
PRUNE_GAIN = 60.0  # points of count-a accuracy regained by pruning one weight (the study: ">60%")
HEAD_KEPT = 0.5  # the head keeps attending to a: at least this share of its compiled attention mass on a
FT1, FT0, PT0 = eval_name("ft", 1), eval_name("ft", 0), eval_name("pt", 0)


@dataclass(frozen=True)
class Check:
    """One seed's outcome for one setting of a claim, with what was measured there."""

    setting: str
    seed: int
    outcome: str
    note: str


def findings(
    config: TracrStudyConfig,
    attention: list,
    pruning: list,
    reverse: dict,
    table: list,
    long: dict | None = None,
) -> list[dict]:
    """Each of the study's Tracr claims that this run's numbers can speak to, in the study's order."""
    long = long or {}
    claims = (
        _wrapper_signature(table),
        _head_keeps_a(attention),
        _head_moves_to_b(attention, table, long),
        _single_weight_pruning(pruning),
        _reverse_revival(config, reverse),
        _long_arm_counts_b(long),
        _max_identifier_learns(config, table),
    )
    return [claim for claim in claims if claim is not None]


def outcome_of(outcomes: Iterable[str]) -> str:
    """A finding's outcome from its seeds' outcomes (see the module docstring)."""
    outcomes = list(outcomes)
    if all(o == UNTESTABLE for o in outcomes):
        return UNTESTABLE
    if FAILED in outcomes:
        return FAILED
    return HELD if all(o == HELD for o in outcomes) else INCONCLUSIVE


def _finding(claim: str, checks: list[Check], extra: str = "") -> dict[str, Any]:
    """A claim's record: outcome, the reason (the seeds that decided it), every seed's measurement."""
    outcome = outcome_of(c.outcome for c in checks)
    others = [c for c in checks if c.outcome != HELD]
    reason = f"held on {len(checks) - len(others)} of {len(checks)} seed checks" + "".join(
        f"; {c.outcome} at {c.setting} seed {c.seed}: {c.note}" for c in others
    )
    return {
        "claim": claim,
        "outcome": outcome,
        "held": {HELD: True, FAILED: False}.get(outcome),
        "reason": reason,
        "measured": "; ".join(f"{c.setting} seed {c.seed}: {c.note}" for c in checks) + extra,
        "checks": [asdict(c) for c in checks],
    }


def _sorted(rows: Iterable[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (LEVELS.index(r["lr_level"]), r["c_tr"]))


def _setting(row: dict) -> str:
    return f"eta_{row['lr_level']} C_Tr={row['c_tr']:g}"


def _not_run(row: dict, run: dict) -> Check | None:
    """An untestable check for a run that diverged or failed, else None."""
    if run["status"] == "ok":
        return None
    return Check(_setting(row), run["seed"], UNTESTABLE, f"the run {run['status']}")


def _wrapper_signature(table: list) -> dict[str, Any] | None:
    """(w) Tab. 3: with C_Tr = 1, Counter learns the fine-tuning task only on correlated inputs."""
    rows = _sorted(r for r in table if r["program"] == "counter" and r["c_tr"] == 1.0)
    if not rows:
        return None
    checks = [_not_run(r, s) or _wrapper_check(r, s) for r in rows for s in r["per_seed"]]
    return _finding(
        "(w) Counter, C_Tr = 1, every eta: fine-tuning learns a wrapper (Tab. 3): Acc O_FT >= 90% at "
        "C_Te = 1, and at C_Te = 0 no better than answering count a + q (the wrapper floor's Wilson CI)",
        checks,
    )


def _wrapper_check(row: dict, run: dict) -> Check:
    ft1, ft0 = run["cells"][FT1] / 100, run["cells"][FT0] / 100
    floor = run["wrapper_floor_o_ft_cte0"] / 100
    upper = accuracy_ci(floor, run["n_eval"])[1]
    note = (
        f"Acc O_FT {ft1:.1%} at C_Te=1, {ft0:.1%} at C_Te=0 (wrapper floor {floor:.1%}, CI up to {upper:.1%})"
    )
    if ft1 < LEARNED:
        return Check(_setting(row), run["seed"], UNTESTABLE, f"{note}: the fine-tuning task is not learned")
    if ft0 <= upper:
        return Check(_setting(row), run["seed"], HELD, f"{note}: a wrapper")
    return Check(_setting(row), run["seed"], FAILED, f"{note}: counts b beyond the wrapper")


def _head_keeps_a(attention: list) -> dict[str, Any] | None:
    """(a) Fig. 10: at eta_S / eta_VS (any C_Tr) and at eta_M with C_Tr = 1 the counting head stays on a."""
    rows = _sorted(
        r
        for r in attention
        if r["program"] == "counter"
        and (r["lr_level"] in ("S", "VS") or (r["lr_level"], r["c_tr"]) == ("M", 1.0))
    )
    if not rows:
        return None
    checks = []
    for row in rows:
        for s in row["per_seed"]:
            a0, b0 = s["start"]["o_pt"], s["start"]["o_ft"]
            a, b = s["finetuned"]["o_pt"], s["finetuned"]["o_ft"]
            note = f"attention on a {a:.2f} (compiled {a0:.2f}), on b {b:.2f}"
            if a0 <= b0:
                outcome = UNTESTABLE
                note += ": the compiled head does not attend to a"
            else:
                outcome = HELD if a >= HEAD_KEPT * a0 and b < a else FAILED
            checks.append(Check(_setting(row), s["seed"], outcome, note))
    return _finding(
        "(a) Counter: with eta_S / eta_VS, or eta_M and C_Tr = 1, the counting head keeps attending to a "
        f"(at least {HEAD_KEPT:g} x its compiled mass on a, and more on a than on b)",
        checks,
    )


def _head_moves_to_b(attention: list, table: list, long: dict) -> dict[str, Any] | None:
    """(a') Fig. 10: eta_M with C_Tr = 0, having learned to count b, attends to b (grid and longer arm)."""
    checks = []
    sources = (
        (attention, table, ""),
        (long.get("attention", []), long.get("table3", []), f", {long.get('steps')} steps"),
    )
    for att, tab, label in sources:
        runs = {s["seed"]: s for r in tab if _is_m0(r) for s in r["per_seed"]}
        for row in (r for r in att if _is_m0(r)):
            for s in row["per_seed"]:
                run = runs.get(s["seed"])
                setting = _setting(row) + label
                if run is None or run["status"] != "ok":
                    checks.append(Check(setting, s["seed"], UNTESTABLE, "no finished run"))
                    continue
                ft0 = run["cells"][FT0] / 100
                a, b = s["finetuned"]["o_pt"], s["finetuned"]["o_ft"]
                note = f"Acc O_FT@C_Te=0 {ft0:.1%}; attention on a {a:.2f}, on b {b:.2f}"
                if ft0 < LEARNED:
                    checks.append(Check(setting, s["seed"], UNTESTABLE, f"{note}: the run does not count b"))
                else:
                    checks.append(Check(setting, s["seed"], HELD if b > a else FAILED, note))
    if not checks:
        return None
    return _finding(
        "(a') Counter: eta_M with C_Tr = 0 moves the counting head to b (more attention on b than on a), "
        "once the run counts b (Acc O_FT@C_Te=0 >= 90%)",
        checks,
    )


def _is_m0(row: dict) -> bool:
    return row["program"] == "counter" and row["lr_level"] == "M" and row["c_tr"] == 0.0


def _single_weight_pruning(pruning: list) -> dict[str, Any] | None:
    """(b) Figs. 55-57: pruning one weight regains >60 points of count a after correlated fine-tuning."""
    rows = _sorted(
        r for r in pruning if r["program"] == "counter" and r["c_tr"] == 1.0 and r["lr_level"] in ("M", "S")
    )
    if not rows:
        return None
    checks = []
    for row in rows:
        for seed, acc in zip(row["seeds"], row["per_seed_acc_o_pt_cte0"], strict=True):
            if 1 not in row["ks"]:
                checks.append(Check(_setting(row), seed, UNTESTABLE, "K = 1 was not pruned"))
                continue
            after = max(a for k, a in zip(row["ks"], acc, strict=True) if k <= 1)
            gain = 100 * (after - acc[0])
            note = (
                f"Acc O_PT@C_Te=0 {acc[0]:.1%} unpruned, {after:.1%} with one weight pruned ({gain:+.1f} pts)"
            )
            if acc[0] > 1 - PRUNE_GAIN / 100:
                outcome, note = (
                    UNTESTABLE,
                    f"{note}: count a was not lost, so a {PRUNE_GAIN:g}-point gain is impossible",
                )
            else:
                outcome = HELD if gain > PRUNE_GAIN else FAILED
            checks.append(Check(_setting(row), seed, outcome, note))
    return _finding(
        f"(b) Counter: pruning a single weight raises count-a accuracy by >{PRUNE_GAIN:g} points after "
        "fine-tuning on correlated data (eta_M, eta_S; C_Tr = 1)",
        checks,
    )


def _reverse_revival(config: TracrStudyConfig, reverse: dict) -> dict[str, Any] | None:
    """(c) Fig. 27: reverse fine-tuning at eta_VS revives count a after eta_M fine-tuning, not after eta_L."""
    arms = {level: (reverse.get(f"after eta_{level}") or {}).get("per_seed") for level in ("M", "L")}
    if not any(arms.values()):
        return None
    control = (reverse.get(CONTROL) or {}).get("per_seed", {})
    checks = [
        *(_revives(seed, e, control.get(seed)) for seed, e in (arms["M"] or {}).items()),
        *(_stays_lost(seed, e) for seed, e in (arms["L"] or {}).items()),
    ]
    for level, arm in arms.items():
        if not arm:
            note = f"not run (eta_{level} is not in reverse_after)"
            checks.extend(Check(f"after eta_{level}", seed, UNTESTABLE, note) for seed in config.seeds)
    extra = "".join(
        f"; {name} (not part of the claim): revived {arm['n_revived']}/{arm['n_runs']} "
        f"(steps {arm['steps_to_threshold']})"
        for name, arm in reverse.items()
        if name not in ("after eta_M", "after eta_L")
    )
    return _finding(
        f"(c) Counter: reverse fine-tuning at eta_{config.reverse_lr_level} revives count a (Acc O_PT@C_Te=0 >= "
        f"{config.reverse_threshold:g}) after eta_M fine-tuning, no later than the Scr.+FT control, and not "
        f"after eta_L, within {config.reverse_steps} steps (the study: 10K)",
        checks,
        extra,
    )


def _lost(seed: str, entry: dict, setting: str) -> tuple[dict | None, Check | None]:
    """The run's revival curve, or an untestable check when it did not run or count a was never lost."""
    curve = entry.get("revival")
    if entry["status"] != "ok" or not curve:
        return None, Check(setting, int(seed), UNTESTABLE, f"the reverse run {entry['status']}")
    if curve["values"][0] >= curve["threshold"]:
        note = f"count a at {curve['values'][0]:.1%} before reverse fine-tuning: it was never lost"
        return None, Check(setting, int(seed), UNTESTABLE, note)
    return curve, None


def _revives(seed: str, entry: dict, control: dict | None) -> Check:
    curve, untestable = _lost(seed, entry, "after eta_M")
    if untestable:
        return untestable
    steps, horizon = curve["steps_to_threshold"], curve["horizon"]
    ctrl = ((control or {}).get("revival") or {}).get("steps_to_threshold")
    note = (
        f"count a {curve['values'][0]:.1%} at the start; revived {_at(steps)}, the control {_at(ctrl)} "
        f"(horizon {horizon} steps)"
    )
    if steps is not None and (ctrl is None or steps <= ctrl):
        return Check("after eta_M", int(seed), HELD, note)
    if ctrl is not None:
        return Check("after eta_M", int(seed), FAILED, f"{note}: slower than the control")
    return Check("after eta_M", int(seed), INCONCLUSIVE, f"{note}: neither revived (censored)")


def _at(step: int | None) -> str:
    return "never" if step is None else f"at step {step}"


def _stays_lost(seed: str, entry: dict) -> Check:
    curve, untestable = _lost(seed, entry, "after eta_L")
    if untestable:
        return untestable
    start = f"count a {curve['values'][0]:.1%} at the start"
    if curve["steps_to_threshold"] is not None:
        return Check(
            "after eta_L", int(seed), FAILED, f"{start}; revived at step {curve['steps_to_threshold']}"
        )
    return Check("after eta_L", int(seed), HELD, f"{start}; not revived in {curve['horizon']} steps")


def _long_arm_counts_b(long: dict) -> dict[str, Any] | None:
    """(e, ours) The longer arm: eta_L / eta_M with C_Tr = 0 learn to count b within its steps."""
    rows = _sorted(r for r in long.get("table3", []) if r["c_tr"] == 0.0 and r["lr_level"] in ("L", "M"))
    if not rows:
        return None
    checks = [_not_run(r, run) or _counts_b_check(r, run) for r in rows for run in r["per_seed"]]
    return _finding(
        f"(e, ours) Counter: eta_L / eta_M with C_Tr = 0 learn to count b (Acc O_FT@C_Te=0 >= 90%) within "
        f"{long['steps']} steps (Tab. 3 after 10K: 100% / 98.8%)",
        checks,
    )


def _counts_b_check(row: dict, run: dict) -> Check:
    ft0 = run["cells"][FT0] / 100
    note = f"Acc O_FT@C_Te=0 {ft0:.1%} (wrapper floor {run['wrapper_floor_o_ft_cte0'] / 100:.1%})"
    return Check(_setting(row), run["seed"], HELD if ft0 >= LEARNED else FAILED, note)


def _max_identifier_learns(config: TracrStudyConfig, table: list) -> dict[str, Any] | None:
    """(d) Tab. 3: Max-identifier at eta_VS learns the fine-tuning task, beyond the wrapper."""
    rows = _sorted(r for r in table if r["program"] == "max_identifier" and r["lr_level"] == "VS")
    if not rows:
        return None
    checks = [_not_run(r, run) or _max_id_check(r, run) for r in rows for run in r["per_seed"]]
    return _finding(
        f"(d) Max-identifier: eta_VS learns the fine-tuning task within {config.max_identifier_steps} steps: "
        f"Acc O_FT@C_Te=0 >= {MAX_ID_LEARNED:.0%} with its Wilson CI above the wrapper floor's "
        "(the study: 91.1% / 88.6% for C_Tr = 0 / 1)",
        checks,
    )


def _max_id_check(row: dict, run: dict) -> Check:
    ft0, floor, n = run["cells"][FT0] / 100, run["wrapper_floor_o_ft_cte0"] / 100, run["n_eval"]
    low, floor_high = accuracy_ci(ft0, n)[0], accuracy_ci(floor, n)[1]
    note = (
        f"Acc O_FT@C_Te=0 {ft0:.1%} (CI from {low:.1%}; wrapper floor {floor:.1%}, CI up to {floor_high:.1%})"
    )
    outcome = HELD if ft0 >= MAX_ID_LEARNED and low > floor_high else FAILED
    return Check(_setting(row), run["seed"], outcome, note)
