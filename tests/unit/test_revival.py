"""Revival metrics on synthetic curves with known answers."""

import pytest

from interp.errors import ConfigError
from interp.revival import (
    auc_log_steps,
    geometric_mean,
    log_spaced_steps,
    revival_curve,
    speedup,
    steps_to_threshold,
)


def test_log_spaced_steps_are_increasing_and_end_at_the_horizon() -> None:
    steps = log_spaced_steps(1000, 10)
    assert steps[0] == 1 and steps[-1] == 1000 and list(steps) == sorted(set(steps))
    assert steps[len(steps) // 2] < 100  # log-spaced, not linear
    with pytest.raises(ConfigError):
        log_spaced_steps(0)


def test_steps_to_threshold_known_answers() -> None:
    steps = [1, 10, 100, 1000]
    assert steps_to_threshold(steps, [0.0, 0.5, 0.95, 1.0], 0.9) == 100
    assert steps_to_threshold(steps, [0.9, 0.5, 0.95, 1.0], 0.9) == 1
    assert steps_to_threshold(steps, [0.0, 0.5, 0.6, 0.7], 0.9) is None


def test_auc_known_answers() -> None:
    assert auc_log_steps([1, 10, 100], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert auc_log_steps([1, 10, 100], [0.0, 0.0, 0.0]) == pytest.approx(0.0)
    # a step from 0 to 1 between 10 and 100: trapezoid gives half of the second decade
    assert auc_log_steps([1, 10, 100], [0.0, 0.0, 1.0]) == pytest.approx(0.25)
    assert auc_log_steps([0], [0.7], max_step=0) == pytest.approx(0.7)  # a run of zero steps
    # carried forward past the last evaluation
    assert auc_log_steps([1, 10], [0.0, 1.0], max_step=100) == pytest.approx(0.75)


def test_speedup_and_censoring() -> None:
    fast = revival_curve("ft", [1, 10, 100, 1000], [0.1, 0.95, 1.0, 1.0], threshold=0.9)
    slow = revival_curve("ctrl", [1, 10, 100, 1000], [0.0, 0.1, 0.95, 1.0], threshold=0.9)
    never = revival_curve("ctrl2", [1, 10, 100, 1000], [0.0, 0.1, 0.2, 0.3], threshold=0.9)
    assert speedup(fast, slow).value == pytest.approx(10.0) and not speedup(fast, slow).lower_bound
    s = speedup(fast, never)
    assert s.value == pytest.approx(100.0) and s.lower_bound
    assert speedup(never, fast).value is None
    at_start = revival_curve("ctrl3", [0, 10, 100], [0.95, 1.0, 1.0], threshold=0.9)
    assert speedup(fast, at_start).value == pytest.approx(0.1)  # step 0 counts as 1
    assert fast.auc > slow.auc > never.auc


def test_geometric_mean() -> None:
    assert geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    with pytest.raises(ConfigError):
        geometric_mean([])
