"""The revival findings of the PCFG study are three-valued: censoring by the horizon is inconclusive."""

from analyses.pcfg.findings import _faster_than_control, _later, _speed_status, _three_valued


def seed(value, lower_bound=False):
    return {"value": value, "lower_bound": lower_bound, "control_steps": None}


def test_speed_status_separates_censored_from_slow():
    assert _speed_status(seed(6.3, True), 5) == "fast"
    assert _speed_status(seed(4.0, True), 5) == "censored"
    assert _speed_status(seed(4.0, False), 5) == "slow"
    assert _speed_status(seed(None), 5) == "slow"


def test_three_valued_outcomes():
    assert _three_valued(["fast", "fast"], want="fast") is True
    assert _three_valued(["fast", "censored"], want="fast") is None
    assert _three_valued(["fast", "censored", "slow"], want="fast") is False
    assert _three_valued([True, None], want=True) is None
    assert _three_valued([True, False], want=True) is False


def test_faster_than_control_and_later():
    assert _faster_than_control(seed(1.0, True))  # reached at the horizon; the control never did
    assert not _faster_than_control(seed(1.0, False))
    assert not _faster_than_control(seed(None))
    assert _later(None, 63) is True and _later(252, 63) is True
    assert _later(40, 63) is False and _later(None, None) is None
