"""Confidence intervals cover the truth at about their nominal rate on seeded synthetic data."""

import numpy as np
import pytest

from interp.errors import ConfigError, DataError
from interp.stats import aggregate, bootstrap_ci, wilson_ci


def test_wilson_covers_true_proportion_at_nominal_rate():
    rng = np.random.default_rng(0)
    p, n, trials = 0.3, 200, 2000
    successes = rng.binomial(n, p, size=trials)
    covered = sum(lo <= p <= hi for lo, hi in (wilson_ci(int(k), n) for k in successes))
    assert 0.93 <= covered / trials <= 0.97


def test_wilson_stays_in_unit_interval_at_the_extremes():
    lo, hi = wilson_ci(0, 50)
    assert lo == 0.0 and 0 < hi < 0.1
    lo, hi = wilson_ci(50, 50)
    assert hi == 1.0 and 0.9 < lo < 1


def test_bootstrap_covers_true_mean_often_and_narrows_with_n():
    rng = np.random.default_rng(1)
    hits, trials = 0, 300
    for i in range(trials):
        values = rng.normal(2.0, 1.0, size=30)
        lo, hi = bootstrap_ci(values, n_resamples=2000, seed=i)
        hits += lo <= 2.0 <= hi
    assert 0.88 <= hits / trials <= 0.98  # percentile bootstrap undercovers slightly at n=30
    small = np.subtract(*bootstrap_ci(rng.normal(size=10), seed=0)[::-1])
    large = np.subtract(*bootstrap_ci(rng.normal(size=1000), seed=0)[::-1])
    assert large < small


def test_bootstrap_is_seeded():
    values = np.random.default_rng(2).normal(size=25)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_aggregate_fields_and_single_value():
    agg = aggregate([1.0, 2.0, 3.0])
    assert agg["mean"] == pytest.approx(2.0)
    assert agg["std"] == pytest.approx(1.0)
    assert agg["n"] == 3 and agg["ci_low"] <= 2.0 <= agg["ci_high"]
    # Student-t with 2 d.f.: 2 +- 4.303 x 1 / sqrt(3), wider than the 3-point bootstrap's min-max [1, 3]
    assert agg["ci_low"] == pytest.approx(2 - 2.4843, abs=1e-3) and agg["ci_high"] > 3
    single = aggregate([0.7])
    assert single == {"mean": 0.7, "std": None, "ci_low": None, "ci_high": None, "n": 1}


def test_bad_inputs_raise_library_errors():
    with pytest.raises(DataError):
        bootstrap_ci([])
    with pytest.raises(DataError):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(DataError):
        wilson_ci(5, 3)
    with pytest.raises(ConfigError):
        wilson_ci(1, 3, confidence=1.5)
