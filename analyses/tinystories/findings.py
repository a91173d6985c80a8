"""The TinyStories study's claims checked on our numbers, seed by seed (criteria fixed before the run).

Each finding gives the claim, its criterion, what was measured (every seed's value), an ``outcome`` (``held``,
``did not hold``, ``inconclusive`` where the data lean the claim's way without deciding it, ``not testable`` where
a precondition fails here) with its ``reason``, and ``holds`` (True / False / None). A claim holds only if every
seed meets it. Generation scores are judged by the primary judge (the strict planted-twist rule where there is one)
with each seed's Wilson interval. The probe claims test every block, a block passing only if every seed does
(the largest p-value over seeds), and correct for testing many blocks with Holm's procedure at ``ALPHA``.
"""

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

from scipy import stats as scipy_stats

from analyses.tinystories.config import CONTROL, PRETRAINED, TinyStoriesStudyConfig
from interp.claims import all_seeds, finding, not_testable

ALPHA = 0.05  # family-wise error rate of the per-block probe tests (Holm)
TIE = 1e-6  # accuracies closer than this are equal (probe accuracies come as float32)


def _finding(claim: str, criterion: str, measured: str, holds: bool | None, reason: str, **numbers) -> dict:
    return finding(claim, measured, holds, reason, criterion=criterion, **numbers)


def _not_testable(claim: str, criterion: str, measured: str, reason: str, **numbers) -> dict:
    return not_testable(claim, measured, reason, criterion=criterion, **numbers)


def _check(clear: bool, against: bool) -> bool | None:
    """One seed: True where the intervals separate the claim's way, False where the estimates go against it."""
    if clear:
        return True
    return False if against else None


def _say(holds: bool | None, held: str, not_held: str, open_: str) -> str:
    """The reason that goes with an outcome."""
    return {True: held, False: not_held, None: open_}[holds]


def _by_seed(summary: dict) -> dict[int, dict]:
    """A score over seeds (``results.over_seeds`` with ``counts``) as {seed: that seed's count and interval}."""
    return dict(zip(summary["seeds"], summary["counts"], strict=True))


def _pct(counts: dict[int, dict]) -> str:
    return ", ".join(
        f"seed {s} {c['rate']:.0%} [{c['ci_low']:.0%}, {c['ci_high']:.0%}]" for s, c in counts.items()
    )


def _judged(
    res: dict, primary: str, scores: Callable[[str], tuple[dict, dict]], names: tuple[str, str]
) -> str:
    """Each seed's two scores (``scores(judge)``, called ``names``) by every judge, the primary first."""
    judges = [primary, *(j for j in res["judges"] if j != primary)]
    return " | ".join(
        f"{j} judge: {names[0]} {_pct(_by_seed(a))}; {names[1]} {_pct(_by_seed(b))}"
        for j, (a, b) in ((j, scores(j)) for j in judges)
    )


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected with family-wise error rate ``alpha``."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    reject = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        reject[i] = True
    return reject


def z_greater(a: float, n_a: int, b: float, n_b: int) -> float:
    """One-sided p-value that proportion ``a`` (of ``n_a``) exceeds ``b`` (of ``n_b``): pooled two-proportion
    z-test. The probes of one seed share their test stories, so this unpaired test is conservative."""
    pooled = (a * n_a + b * n_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 1.0 if se == 0 else 1.0 - NormalDist().cdf((a - b) / se)


def binomial_greater(accuracy: float, n: int, floor: float) -> float:
    """One-sided exact binomial p-value that an accuracy on ``n`` stories exceeds the rate ``floor``."""
    return float(scipy_stats.binomtest(round(accuracy * n), n, floor, alternative="greater").pvalue)


def _deletion_finding(row: str, res: dict, primary: str) -> dict:
    """Deletion ``row`` lowers the generation score, in every seed."""
    claim = f"deletion {row} drives the generation score down"
    criterion = (
        f"in every seed the Wilson 95% interval of the deleted model's score ({primary} judge) lies below the "
        "pretrained model's; a seed where it is not lower at all is a counter-example"
    )
    before = _by_seed(res["pretrained"]["score"][primary])
    after = _by_seed(res["table1"]["rows"][row]["scores"]["0"][primary])
    seeds = [s for s in after if s in before]
    measured = _judged(
        res,
        primary,
        lambda j: (res["pretrained"]["score"][j], res["table1"]["rows"][row]["scores"]["0"][j]),
        ("pretrained", "deleted"),
    )
    never = [s for s in seeds if before[s]["k"] == 0]
    if not seeds or never:
        return _not_testable(
            claim, criterion, measured, f"the pretrained model never writes the feature (seeds {never})"
        )
    checks = [
        _check(after[s]["ci_high"] < before[s]["ci_low"], after[s]["rate"] >= before[s]["rate"])
        for s in seeds
    ]
    losses, holds = res["deletion"][row], all_seeds(checks)
    return _finding(
        claim,
        criterion,
        measured,
        holds,
        _say(
            holds,
            "lower in every seed",
            "not lower in some seed",
            "lower, but the intervals overlap in some seed",
        ),
        feature_loss_before=losses["feature_loss_before"],
        feature_loss_after=losses["feature_loss_after"],
    )


def _loss_check(mine: int | None, theirs: int | None) -> bool | None:
    """Faster than the control (True), not faster (False), or neither reached the loss (None)."""
    if mine is None and theirs is None:
        return None
    return mine is not None and (theirs is None or mine < theirs)


def _loss_recovery_finding(row: str, revival: dict) -> dict:
    """Recovery from ``row`` reaches the pretrained loss in fewer steps than the control, seed by seed."""
    claim = f"recovery after {row} is faster than the never-had-it control (feature loss)"
    criterion = (
        "every seed reaches the pretrained model's feature loss x (1 + tolerance) in fewer recovery steps than "
        "the control of the same seed (a control that never reaches it is slower; a tie is not faster)"
    )
    control = revival.get(CONTROL, {})
    pairs = {
        s: (e["loss"]["steps_to_threshold"], control[s]["loss"]["steps_to_threshold"])
        for s, e in revival.get(row, {}).items()
        if s in control
    }
    measured = "steps to the loss (row vs control): " + ", ".join(
        f"seed {s} {m} vs {c}" for s, (m, c) in pairs.items()
    )
    vacuous = [s for s, (m, _) in pairs.items() if m == 0]
    if not pairs or vacuous:
        reason = (
            f"the deletion left the loss within the tolerance (seeds {vacuous})"
            if pairs
            else "no control run"
        )
        return _not_testable(claim, criterion, measured, reason)
    holds = all_seeds([_loss_check(m, c) for m, c in pairs.values()])
    censored = "in some seed neither reached the loss within the recovery (censored)"
    return _finding(
        claim,
        criterion,
        measured,
        holds,
        _say(holds, "faster in every seed", "not faster in some seed", censored),
    )


def _score_recovery_finding(row: str, res: dict, step: str, primary: str, deletion_outcome: str) -> dict:
    """After ``step`` (R/10) recovery steps from ``row`` the score is above the control's, in every seed."""
    claim = f"after {step} recovery steps from {row} the generation score is above the control's"
    criterion = (
        f"in every seed the Wilson 95% interval of the score ({primary} judge) at step {step} lies above the "
        "never-had-it control's; testable only where the deletion lowered the score"
    )
    rows = res["table1"]["rows"]
    mine, theirs = (_by_seed(rows[r]["scores"][step][primary]) for r in (row, CONTROL))
    seeds = [s for s in mine if s in theirs]
    measured = _judged(
        res,
        primary,
        lambda j: (rows[row]["scores"][step][j], rows[CONTROL]["scores"][step][j]),
        ("recovered", "control"),
    )
    if deletion_outcome != "held" or not seeds:
        reason = f"the deletion did not lower the score here (its finding: {deletion_outcome})"
        return _not_testable(claim, criterion, measured, reason)
    checks = [
        _check(mine[s]["ci_low"] > theirs[s]["ci_high"], mine[s]["rate"] <= theirs[s]["rate"]) for s in seeds
    ]
    holds = all_seeds(checks)
    overlap = "above, but the intervals overlap in some seed"
    return _finding(
        claim,
        criterion,
        measured,
        holds,
        _say(holds, "above in every seed", "not above in some seed", overlap),
    )


def _block_tests(rows: Sequence[dict], p_value) -> tuple[list[float], list[bool]]:
    """Per block: the largest p-value over seeds (``p_value(seed, accuracy, n, block)``) and Holm's verdicts."""
    pvalues = [
        max(p_value(s, a, n, i) for s, a, n in zip(r["seeds"], r["values"], r["n"], strict=True))
        for i, r in enumerate(rows)
    ]
    return pvalues, holm(pvalues)


PROBE_CRITERION = (
    "at some block the deleted model's held-out probe accuracy exceeds the control's in every seed "
    f"(one-sided two-proportion z-test per seed, the largest p over seeds), Holm-corrected over all blocks "
    f"at {ALPHA:.0%}; testable only where the pretrained model's probe passes the same test"
)
FLOOR_CRITERION = (
    "at some block the pretrained model's held-out probe accuracy exceeds that seed's majority floor in "
    f"every seed (one-sided exact binomial test, the largest p over seeds), Holm-corrected over blocks at "
    f"{ALPHA:.0%}"
)


def _above_control(model: Sequence[dict], control: Sequence[dict]) -> tuple[list[float], list[bool]]:
    """Per-block tests that ``model``'s probe reads the feature better than the control's, seed by seed."""
    ctrl = [dict(zip(c["seeds"], zip(c["values"], c["n"], strict=True), strict=True)) for c in control]
    return _block_tests(model, lambda s, a, n, i: z_greater(a, n, *ctrl[i][s]))


def _probe_finding(row: str, probes: dict, feature: str) -> dict:
    """After deletion ``row`` the feature probe still reads more than the never-had-it model's (Holm over blocks)."""
    claim = f"after {row} the {feature} probe stays above the never-had-it model's"
    criterion = PROBE_CRITERION
    deleted, control, pretrained = (probes[m]["feature"] for m in (row, CONTROL, PRETRAINED))
    pvalues, passed = _above_control(deleted, control)
    measured = "per block mean accuracy deleted / control, p (largest over seeds): " + "; ".join(
        f"{d['layer']} {d['mean']:.3f} / {c['mean']:.3f}, p {p:.2g}"
        for d, c, p in zip(deleted, control, pvalues, strict=True)
    )
    blocks = [d["layer"] for d, ok in zip(deleted, passed, strict=True) if ok]
    numbers = {"p_values": pvalues, "blocks_passing": blocks}
    if not any(_above_control(pretrained, control)[1]):
        reason = (
            "the pretrained model's probe does not read the feature better than the control's at any block"
        )
        return _not_testable(claim, criterion, measured, reason, **numbers)
    if blocks:
        return _finding(claim, criterion, measured, True, f"passes at {', '.join(blocks)}", **numbers)
    if all(d["mean"] <= c["mean"] + TIE for d, c in zip(deleted, control, strict=True)):
        return _finding(claim, criterion, measured, False, "not above the control at any block", **numbers)
    return _finding(
        claim, criterion, measured, None, "above at some block, but no block passes Holm", **numbers
    )


def _floor_finding(probes: dict, floor: dict, feature: str) -> dict:
    """The pretrained model's probe reads the feature above its majority floor at some block (Holm over blocks)."""
    claim = f"the pretrained model's {feature} probe reads the feature above its majority floor"
    criterion = FLOOR_CRITERION
    rows = probes[PRETRAINED]["feature"]
    floors = dict(zip(floor["seeds"], floor["values"], strict=True))
    pvalues, passed = _block_tests(rows, lambda s, a, n, i: binomial_greater(a, n, floors[s]))
    measured = (
        f"majority floor {floor['mean']:.3f}; per block mean accuracy, p (largest over seeds): "
        + "; ".join(f"{r['layer']} {r['mean']:.3f}, p {p:.2g}" for r, p in zip(rows, pvalues, strict=True))
    )
    blocks = [r["layer"] for r, ok in zip(rows, passed, strict=True) if ok]
    numbers = {"p_values": pvalues, "blocks_passing": blocks}
    if blocks:
        return _finding(claim, criterion, measured, True, f"passes at {', '.join(blocks)}", **numbers)
    if all(r["mean"] <= floor["mean"] + TIE for r in rows):
        return _finding(claim, criterion, measured, False, "at or below the floor at every block", **numbers)
    return _finding(
        claim, criterion, measured, None, "above at some block, but no block passes Holm", **numbers
    )


def _no_judge(row: str, res: dict, step: str) -> list[dict]:
    """The score claims where no local rule judges the feature (real stories, any feature but dialogue)."""
    reason = f"no local judge of {res['feature']} on real stories (the study used a fine-tuned GPT-3.5)"
    criterion = "needs the generation score, i.e. a judge of the generations"
    claims = (
        f"deletion {row} drives the generation score down",
        f"after {step} recovery steps from {row} the generation score is above the control's",
    )
    return [_not_testable(claim, criterion, "no score", reason) for claim in claims]


def findings(res: dict, config: TinyStoriesStudyConfig) -> list[dict]:
    """The study's three claims (deletion lowers the score; recovery is faster than the control; the probe still
    reads the feature), each per deletion row, then the probe's floor check."""
    primary = res["primary_judge"]
    r10 = str(config.score_steps[2])
    out = []
    for row in res["deletion"]:
        if primary is None:
            out += _no_judge(row, res, r10)
            out.append(_loss_recovery_finding(row, res["revival"]))
            continue
        deletion = _deletion_finding(row, res, primary)
        out += [
            deletion,
            _loss_recovery_finding(row, res["revival"]),
            _score_recovery_finding(row, res, r10, primary, deletion["outcome"]),
        ]
    probes = res["fig11"]["probe_accuracy"]
    for row in res["deletion"]:
        if row in probes and CONTROL in probes:
            out.append(_probe_finding(row, probes, config.feature))
    out.append(_floor_finding(probes, res["fig11"]["feature_majority_floor"], config.feature))
    return out
