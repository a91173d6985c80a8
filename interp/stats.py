"""Confidence intervals for the numbers ftmech reports: means over seeds and accuracies over samples.

The study reports no seeds or error bars (protocol §9.3); every aggregate here carries its spread.

- ``bootstrap_ci``: percentile bootstrap of the mean of a few per-seed values, from a seeded numpy
  Generator, so the same values and seed give the same interval.
- ``wilson_ci``: the Wilson score interval of a binomial proportion (an accuracy of ``k`` correct out of
  ``n``); unlike the normal approximation it stays inside [0, 1] and is sensible at 0% and 100%.
- ``accuracy_ci``: the Wilson interval of an accuracy given as a fraction of ``n`` examples.
- ``t_interval``: Student-t interval of the mean of a few per-seed values. With 3 seeds a percentile
  bootstrap "95%" interval is only the min-max range (its true coverage is about 75%); the t-interval is
  the honest one for so few values.
- ``aggregate``: mean, sample standard deviation and Student-t CI of per-seed values in one dict.
"""

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from scipy import stats as scipy_stats

from interp.errors import ConfigError, DataError


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}; e.g. 0.95")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be >= 1, got {n_resamples}")
    data = np.asarray(values, dtype=float).ravel()
    if data.size == 0:
        raise DataError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(data)):
        raise DataError(f"bootstrap_ci got non-finite values: {data[~np.isfinite(data)][:3].tolist()}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(n_resamples, data.size))
    means = data[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def wilson_ci(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``."""
    _check_confidence(confidence)
    if n < 1:
        raise DataError(f"wilson_ci needs n >= 1 samples, got {n}")
    if not 0 <= successes <= n:
        raise DataError(f"successes {successes} must be between 0 and n {n}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_ci(accuracy: float, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of an accuracy measured on ``n`` examples (the correct count is ``accuracy * n``)."""
    return wilson_ci(round(accuracy * n), n, confidence=confidence)


def t_interval(
    values: Sequence[float] | np.ndarray, *, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Student-t interval of the mean of ``values``; None for fewer than two values."""
    _check_confidence(confidence)
    data = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(data)):
        raise DataError(f"t_interval got non-finite values: {data[~np.isfinite(data)][:3].tolist()}")
    if data.size < 2:
        return None
    half = (
        float(scipy_stats.t.ppf(1 - (1 - confidence) / 2, data.size - 1))
        * data.std(ddof=1)
        / math.sqrt(data.size)
    )
    return float(data.mean() - half), float(data.mean() + half)


def aggregate(
    values: Sequence[float] | np.ndarray, *, confidence: float = 0.95
) -> dict[str, float | int | None]:
    """``{mean, std, ci_low, ci_high, n}`` of per-seed values, the CI a Student-t interval of the mean; std
    and CI are None for a single value."""
    data = np.asarray(values, dtype=float).ravel()
    if data.size == 0:
        raise DataError("aggregate needs at least one value")
    if data.size == 1:
        return {"mean": float(data[0]), "std": None, "ci_low": None, "ci_high": None, "n": 1}
    low, high = t_interval(data, confidence=confidence)
    return {
        "mean": float(data.mean()),
        "std": float(data.std(ddof=1)),
        "ci_low": low,
        "ci_high": high,
        "n": int(data.size),
    }
