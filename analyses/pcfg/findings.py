"""The PCFG study's claims checked on our numbers, seed by seed.

Each finding gives the claim, what was measured (every seed's value), an ``outcome`` (``held``, ``did not hold``,
``inconclusive`` where censored revival leaves it open, ``not testable`` where the claim's precondition fails
here) with its ``reason``, and ``holds`` (True / False / None) for code that reads it. Thresholds are tied to
measured floors with Wilson intervals on each seed's evaluation set; a claim holds only if every seed meets it.
Claims about our own arm (fine-tuning at eta_PT, none of the study's settings) say "ours".
"""

from interp.claims import all_seeds, finding, not_testable
from interp.lr_levels import OURS
from interp.stats import accuracy_ci

FAST_SPEEDUP = 5.0  # "fast revival": at least this many times fewer steps than the Scr.+FT control
STRONGLY_RELEVANT = 0.95  # the study's strongly relevant priors count b at 99.9% before fine-tuning
SIGNATURE_C_TE1 = 0.9  # the wrapper answers O_FT on correlated inputs
STUDY_WRAPPER_MAX = 0.016  # the study's wrappers score 0.0-1.6% at C_Te = 0 (Tab. 5)


def _seeds(values: list) -> str:
    return "[" + ", ".join("-" if v is None else f"{v:.1%}" for v in values) + "]"


def _signature(row: dict, n: int) -> dict | None:
    """High O_FT at C_Te = 1, O_FT at the strict C_Te = 0 at the study's wrapper level, and at the plain
    C_Te = 0 within the Wilson interval of the count(O_PT) + q shortcut floor: in every seed."""
    final = row["final"]
    if not {"count_b@cte1", "count_b@cte0", "count_b@cte0strict"} <= set(final):
        return None
    b1, b0 = final["count_b@cte1"]["values"], final["count_b@cte0"]["values"]
    strict, floors = final["count_b@cte0strict"]["values"], row["shortcut_floor_b0"]["values"]
    checks = []
    for hi, plain, exact, floor in zip(b1, b0, strict, floors, strict=True):
        low, high = accuracy_ci(plain, n)
        checks.append(
            hi >= SIGNATURE_C_TE1 and accuracy_ci(exact, n)[0] <= STUDY_WRAPPER_MAX and low <= floor <= high
        )
    return finding(
        f"wrapper signature ({row['name']}): O_FT >= {SIGNATURE_C_TE1:.0%} at C_Te=1, at the wrappers' level at "
        "the strict C_Te=0 and at the shortcut floor at the plain C_Te=0",
        f"per seed: O_FT@C_Te=1 {_seeds(b1)}, strict C_Te=0 {_seeds(strict)}, plain C_Te=0 {_seeds(b0)} vs "
        f"shortcut floor {_seeds(floors)} (n = {n} each)",
        all_seeds(checks),
        f"strict C_Te=0: Wilson lower bound <= {STUDY_WRAPPER_MAX:.1%} (the study's wrappers score 0.0-1.6%); "
        "plain C_Te=0: its Wilson interval contains the shortcut floor",
    )


def _collapse(row: dict, n: int) -> dict | None:
    """O_PT at C_Te = 0 falls to the majority floor (below its Wilson upper bound) in every seed."""
    a0 = row["final"].get("count_a@cte0")
    if a0 is None or row.get("majority_floor_a0") is None:
        return None
    floors = row["majority_floor_a0"]["values"]
    checks = [acc <= accuracy_ci(floor, n)[1] for acc, floor in zip(a0["values"], floors, strict=True)]
    return finding(
        f"behavioural loss of O_PT ({row['name']}): count-a accuracy at C_Te=0 collapses to the majority floor",
        f"per seed: O_PT@C_Te=0 {_seeds(a0['values'])} vs majority floor {_seeds(floors)} (n = {n})",
        all_seeds(checks),
        "each seed's accuracy is at most the Wilson upper bound of its majority floor",
    )


def _wrapper_findings(results: dict) -> list[dict]:
    """Signature and collapse for each low-prior C_Tr = 1 model at the study's eta_M and eta_S."""
    n = results["preset"]["final_eval_n"]
    out: list[dict] = []
    for row in results["finetune"]:
        if row["prior"] == "low" and row["c_tr"] == 1.0 and row["lr_level"] in ("M", "S") and row["final"]:
            out += [f for f in (_signature(row, n), _collapse(row, n)) if f is not None]
    return out


def _speed_status(item: dict) -> bool | None:
    """Fast (True), slow (False: never revived, or a measured speed-up below the line) or open (None: only a
    lower bound below the line is known, because the control never reached the threshold)."""
    if item["value"] is None:
        return False
    if item["value"] >= FAST_SPEEDUP:
        return True
    return None if item["lower_bound"] else False


def _speedups(items: list[dict]) -> str:
    return "speed-up over Scr.+FT per seed: " + ", ".join(
        "not revived" if i["value"] is None else f"{'>=' if i['lower_bound'] else ''}{i['value']:.1f}x"
        for i in items
    )


def _revival_findings(results: dict) -> list[dict]:
    """The study's arms revive fast; our eta_PT arm (damaged, as Tracr's large LR is) does not."""
    out: list[dict] = []
    for name, versus in results["revival"]["speedups"].items():
        items = versus.get("Scr.+FT", {}).get("per_seed")
        if not items:
            continue
        statuses = [_speed_status(i) for i in items]
        censored = sum(i["lower_bound"] for i in items)
        reason = (
            f">= {FAST_SPEEDUP:g}x fewer steps to the threshold than Scr.+FT; {censored} seed(s) censored"
        )
        if f"eta_{OURS}" in name:
            out.append(
                finding(
                    f"ours, damage at eta_PT ({name}): reverse FT does NOT revive >= {FAST_SPEEDUP:g}x faster "
                    "than Scr.+FT",
                    _speedups(items),
                    all_seeds([None if s is None else not s for s in statuses]),
                    reason + " (our arm: the study fine-tunes at eta_M and eta_S only)",
                )
            )
            continue
        out.append(
            finding(
                f"fast revival ({name}): reverse FT reaches the threshold >= {FAST_SPEEDUP:g}x faster than Scr.+FT",
                _speedups(items),
                all_seeds(statuses),
                reason,
            )
        )
    return out


def _orderingfinding(results: dict) -> list[dict]:
    """The strongly relevant (medium) prior revives faster than the low one, if it is strongly relevant here."""
    m = results["revival"]["metrics"]
    low, med = m.get("FT(low, eta_M, C_Tr=1)"), m.get("FT(medium, eta_M, C_Tr=1)")
    if not (low and med and low.get("auc") and med.get("auc")):
        return []
    claim = "ordering: the strongly relevant (medium) prior revives faster than the low prior (larger log-step AUC)"
    measured = (
        f"AUC per seed: medium {[round(v, 3) for v in med['auc']]} vs low {[round(v, 3) for v in low['auc']]}"
    )
    count_b = results["pretrain"].get("medium", {}).get("final", {}).get("count_b@cte0", {}).get("values", [])
    if not count_b or min(count_b) < STRONGLY_RELEVANT:
        return [
            not_testable(
                claim,
                measured,
                f"the medium-prior model counts b at {_seeds(count_b)} before fine-tuning, below the "
                f"{STRONGLY_RELEVANT:.0%} of a strongly relevant capability (the study's: 99.9%)",
            )
        ]
    checks = [hi > lo for hi, lo in zip(med["auc"], low["auc"], strict=True)]
    return [finding(claim, measured, all_seeds(checks), "larger AUC in every seed")]


def findings(results: dict) -> list[dict]:
    """The study's claims checked on our numbers; each says what was measured and its outcome."""
    return [*_wrapper_findings(results), *_revival_findings(results), *_orderingfinding(results)]
