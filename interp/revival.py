"""Revival metrics for reverse fine-tuning: how fast does a capability come back?

Context: the study (Jain et al. 2023, Sec. 6) trains a fine-tuned model back on its pretraining task at
a small learning rate and compares how fast the pretraining accuracy returns against controls that
never had the capability (Scr.+FT: pretrained on other operands; Scr.: random init) trained with the
identical recipe. A capability that was only wrapped revives in a few steps; one that was removed
revives no faster than a control learns it.

Curves are accuracies at (typically log-spaced) evaluation steps. A curve that never reaches the
threshold within its horizon is *censored*: its steps-to-threshold is unknown but larger than the
horizon, and a speed-up against it is a lower bound.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from interp.errors import ConfigError


def log_spaced_steps(max_step: int, n: int = 16, *, first: int = 1) -> tuple[int, ...]:
    """About ``n`` distinct integer steps from ``first`` to ``max_step``, evenly spaced in log-step."""
    if max_step < first or first < 1:
        raise ConfigError(f"need 1 <= first <= max_step, got first={first}, max_step={max_step}")
    raw = np.geomspace(first, max_step, num=max(2, n))
    return tuple(sorted({int(round(x)) for x in raw} | {max_step}))


def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first evaluated step whose value is >= ``threshold``; None if the curve never gets there."""
    if len(steps) != len(values):
        raise ConfigError(f"steps ({len(steps)}) and values ({len(values)}) differ in length")
    for step, value in zip(steps, values, strict=True):
        if value >= threshold:
            return int(step)
    return None


def auc_log_steps(steps: Sequence[int], values: Sequence[float], *, max_step: int | None = None) -> float:
    """Area under value vs log10(step) from the first positive step to ``max_step``, divided by its width.

    1.0 means the value was 1 from the first evaluation on; a step-0 point stands for step 1. Values
    past the last evaluation are carried forward to ``max_step``.
    """
    pts = sorted((max(1, int(s)), float(v)) for s, v in zip(steps, values, strict=True))
    if not pts:
        raise ConfigError("an empty curve has no area")
    horizon = max(1, max_step if max_step is not None else pts[-1][0])
    pts = [p for p in pts if p[0] <= horizon]
    if pts[-1][0] < horizon:
        pts.append((horizon, pts[-1][1]))
    xs = np.log10([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    width = xs[-1] - xs[0]
    if width <= 0:
        return float(ys[-1])
    return float(np.trapezoid(ys, xs) / width)


@dataclass(frozen=True)
class RevivalCurve:
    """One reverse fine-tuning curve and its summary metrics."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    threshold: float
    steps_to_threshold: int | None  # None: censored (never reached within the horizon)
    horizon: int
    auc: float

    def to_json(self) -> dict:
        return asdict(self)


def revival_curve(
    name: str, steps: Sequence[int], values: Sequence[float], *, threshold: float, horizon: int | None = None
) -> RevivalCurve:
    """Summarise an accuracy curve: steps to ``threshold`` and normalised area over log-steps."""
    horizon = horizon if horizon is not None else int(max(steps))
    return RevivalCurve(
        name=name,
        steps=tuple(int(s) for s in steps),
        values=tuple(float(v) for v in values),
        threshold=threshold,
        steps_to_threshold=steps_to_threshold(steps, values, threshold),
        horizon=horizon,
        auc=auc_log_steps(steps, values, max_step=horizon),
    )


@dataclass(frozen=True)
class Speedup:
    """Steps-to-threshold of a control over that of a revived model.

    ``lower_bound`` is True when the control never reached the threshold (the ratio uses its horizon,
    so the true speed-up is at least ``value``); ``value`` is None when the revived model itself never
    reached it (no speed-up can be claimed).
    """

    value: float | None
    lower_bound: bool

    def to_json(self) -> dict:
        return asdict(self)


def speedup(model: RevivalCurve, control: RevivalCurve) -> Speedup:
    """How many times fewer steps ``model`` needed than ``control`` to reach the threshold."""
    if model.steps_to_threshold is None:
        return Speedup(value=None, lower_bound=False)
    ref = control.steps_to_threshold
    censored = ref is None
    control_steps = control.horizon if censored else ref
    # Step 0 (already at the threshold) counts as one step on both sides, so ratios stay finite and positive.
    return Speedup(value=max(1, control_steps) / max(1, model.steps_to_threshold), lower_bound=censored)


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of positive ratios (the natural average of speed-ups)."""
    if not values or any(v <= 0 for v in values):
        raise ConfigError("geometric mean needs positive values")
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))
