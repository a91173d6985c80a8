"""A study's claim checked on its own numbers, seed by seed: one outcome vocabulary and one way to combine seeds.

A finding records the claim, what was measured, ``holds`` (True / False / None), its ``outcome`` (held, did
not hold, inconclusive, or not testable where a precondition fails) and the reason.
"""

from collections.abc import Sequence
from typing import Any

OUTCOMES = {True: "held", False: "did not hold", None: "inconclusive"}
NOT_TESTABLE = "not testable"


def all_seeds(checks: Sequence[bool | None]) -> bool | None:
    """True if every seed holds; False if any seed is a definite counter-example; None otherwise."""
    if checks and all(c is True for c in checks):
        return True
    return False if any(c is False for c in checks) else None


def finding(claim: str, measured: str, holds: bool | None, reason: str, **fields: Any) -> dict:
    """One checked claim; ``fields`` add study-specific entries (the criterion, the numbers behind it)."""
    return {
        "claim": claim,
        "measured": measured,
        "holds": holds,
        "outcome": OUTCOMES[holds],
        "reason": reason,
        **fields,
    }


def not_testable(claim: str, measured: str, reason: str, **fields: Any) -> dict:
    """A claim whose precondition fails here: no outcome either way, and why."""
    return {**finding(claim, measured, None, reason, **fields), "outcome": NOT_TESTABLE}
