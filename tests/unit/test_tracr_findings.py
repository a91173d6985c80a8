"""The Tracr findings on hand-made results: each claim fails on a seed that contradicts it (even when the
seed mean would pass), comes out "not testable" when its premise fails, and "inconclusive" when censored."""

import pytest

from analyses.tracr.config import CONTROL, TracrStudyConfig
from analyses.tracr.findings import (
    FAILED,
    HELD,
    INCONCLUSIVE,
    UNTESTABLE,
    findings,
    outcome_of,
)

CONFIG = TracrStudyConfig(seeds=(0, 1))


def _run(seed: int, ft1: float, ft0: float, floor: float = 0.2, status: str = "ok", n: int = 500) -> dict:
    """One seed of a Table-3 row: final accuracies as fractions, stored in % as results.json does."""
    cells = {"o_pt@cte1": 0.0, "o_ft@cte1": 100 * ft1, "o_pt@cte0": 0.0, "o_ft@cte0": 100 * ft0}
    return {
        "seed": seed,
        "status": status,
        "cells": cells,
        "wrapper_floor_o_ft_cte0": 100 * floor,
        "n_eval": n,
    }


def _row(level: str, c_tr: float, runs: list[dict], program: str = "counter") -> dict:
    return {"program": program, "lr_level": level, "c_tr": c_tr, "per_seed": runs}


def _head(seed: int, a: float, b: float, a0: float = 0.6) -> dict:
    return {"seed": seed, "start": {"o_pt": a0, "o_ft": 0.0}, "finetuned": {"o_pt": a, "o_ft": b}}


def _prune(level: str, per_seed: list[list[float]]) -> dict:
    seeds = list(range(len(per_seed)))
    return {"program": "counter", "lr_level": level, "c_tr": 1.0, "ks": [0, 1, 2], "seeds": seeds,
            "per_seed_acc_o_pt_cte0": per_seed}  # fmt: skip


def _curve(start: float, revived_at: int | None, horizon: int = 200) -> dict:
    return {
        "status": "ok",
        "revival": {"values": [start, 0.5, 1.0], "threshold": 0.9, "steps_to_threshold": revived_at, "horizon": horizon},
    }  # fmt: skip


def _arm(*entries: dict) -> dict:
    return {"per_seed": {str(i): e for i, e in enumerate(entries)}, "n_revived": 0, "n_runs": len(entries),
            "steps_to_threshold": []}  # fmt: skip


def _claim(results: list[dict], label: str) -> dict:
    [finding] = [f for f in results if f["claim"].startswith(label)]
    return finding


def _wrapper(*runs: dict) -> dict:
    return _claim(findings(CONFIG, [], [], {}, [_row("M", 1.0, list(runs))]), "(w)")


# --- combining seeds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([HELD, HELD], HELD),
        ([HELD, FAILED], FAILED),
        ([UNTESTABLE, FAILED], FAILED),
        ([HELD, UNTESTABLE], INCONCLUSIVE),
        ([HELD, INCONCLUSIVE], INCONCLUSIVE),
        ([UNTESTABLE, UNTESTABLE], UNTESTABLE),
    ],
)
def test_a_finding_holds_only_if_every_seed_held(outcomes, expected):
    assert outcome_of(outcomes) == expected


# --- (w) the wrapper signature ----------------------------------------------------------------------------


def test_wrapper_signature_holds_at_the_wrapper_floor_on_every_seed():
    finding = _wrapper(_run(0, 0.98, 0.21), _run(1, 0.97, 0.0))
    assert (finding["outcome"], finding["held"]) == (HELD, True)


def test_wrapper_signature_fails_when_one_seed_counts_b_beyond_the_floor():
    finding = _wrapper(_run(0, 0.98, 0.20), _run(1, 0.99, 0.60))
    assert (finding["outcome"], finding["held"]) == (FAILED, False)
    assert "seed 1" in finding["reason"] and "counts b beyond the wrapper" in finding["reason"]


def test_wrapper_signature_is_judged_against_the_measured_floor_not_a_constant():
    # 25% at C_Te = 0 is above the Wilson CI of a 20% floor (500 inputs: up to 23.7%) but within a 24% one.
    assert _wrapper(_run(0, 0.98, 0.25, floor=0.20))["outcome"] == FAILED
    assert _wrapper(_run(0, 0.98, 0.25, floor=0.24))["outcome"] == HELD


def test_wrapper_signature_is_not_testable_when_the_task_was_not_learned():
    finding = _wrapper(_run(0, 0.40, 0.10), _run(1, 0.50, 0.10))
    assert (finding["outcome"], finding["held"]) == (UNTESTABLE, None)
    assert "not learned" in finding["reason"]


def test_wrapper_signature_is_inconclusive_when_a_seed_diverged():
    finding = _wrapper(_run(0, 0.98, 0.20), _run(1, 0.98, 0.20, status="diverged"))
    assert finding["outcome"] == INCONCLUSIVE and "diverged" in finding["reason"]


# --- (a), (a') the counting head ----------------------------------------------------------------------------


def _head_claims(attention: list[dict], table: list[dict], long: dict | None = None) -> list[dict]:
    return findings(CONFIG, attention, [], {}, table, long)


def test_head_keeps_a_fails_on_one_seed_that_moved_to_b():
    row = {**_row("S", 1.0, []), "per_seed": [_head(0, 0.6, 0.0), _head(1, 0.1, 0.5)]}
    assert _claim(_head_claims([row], []), "(a)")["outcome"] == FAILED
    row["per_seed"][1] = _head(1, 0.25, 0.0)  # below half of its compiled 0.6
    assert _claim(_head_claims([row], []), "(a)")["outcome"] == FAILED
    row["per_seed"][1] = _head(1, 0.55, 0.05)
    assert _claim(_head_claims([row], []), "(a)")["outcome"] == HELD


def test_head_moves_to_b_needs_a_run_that_counts_b():
    attention = [{**_row("M", 0.0, []), "per_seed": [_head(0, 0.6, 0.0), _head(1, 0.6, 0.0)]}]
    not_counting = [_row("M", 0.0, [_run(0, 0.3, 0.3), _run(1, 0.3, 0.3)])]
    finding = _claim(_head_claims(attention, not_counting), "(a')")
    assert finding["outcome"] == UNTESTABLE and "does not count b" in finding["reason"]
    counting = [_row("M", 0.0, [_run(0, 0.99, 0.99), _run(1, 0.99, 0.99)])]
    assert _claim(_head_claims(attention, counting), "(a')")["outcome"] == FAILED  # counts b, head on a
    attention[0]["per_seed"] = [_head(0, 0.1, 0.6), _head(1, 0.1, 0.6)]
    assert _claim(_head_claims(attention, counting), "(a')")["outcome"] == HELD


def test_head_moves_to_b_is_checked_on_the_longer_arm_too():
    long = {
        "steps": 1000,
        "attention": [{**_row("M", 0.0, []), "per_seed": [_head(0, 0.6, 0.1)]}],
        "table3": [_row("M", 0.0, [_run(0, 0.99, 0.95)])],
    }
    finding = _claim(_head_claims([], [], long), "(a')")
    assert finding["outcome"] == FAILED and "1000 steps" in finding["measured"]


# --- (b) single-weight pruning ------------------------------------------------------------------------------


def test_pruning_fails_on_one_seed_below_60_points_even_if_the_mean_is_above():
    pruning = [_prune("M", [[0.0, 0.9, 0.9], [0.0, 0.5, 0.6]])]  # +90 and +50 points: mean +70
    finding = _claim(findings(CONFIG, [], pruning, {}, []), "(b)")
    assert (finding["outcome"], finding["held"]) == (FAILED, False)
    pruning = [_prune("M", [[0.0, 0.9, 0.9], [0.1, 0.8, 0.8]])]
    assert _claim(findings(CONFIG, [], pruning, {}, []), "(b)")["outcome"] == HELD


def test_pruning_uses_k_1_only():
    pruning = [_prune("S", [[0.0, 0.2, 0.95]])]  # +95 points needs K = 2
    assert _claim(findings(CONFIG, [], pruning, {}, []), "(b)")["outcome"] == FAILED


def test_pruning_is_not_testable_where_count_a_was_never_lost():
    pruning = [_prune("M", [[0.5, 0.6, 0.6], [0.7, 0.7, 0.7]])]
    finding = _claim(findings(CONFIG, [], pruning, {}, []), "(b)")
    assert finding["outcome"] == UNTESTABLE and "was not lost" in finding["reason"]


# --- (c) reverse fine-tuning --------------------------------------------------------------------------------


def _reverse(after_m: dict | None, after_l: dict | None, control: dict | None = None) -> dict:
    reverse = {"after eta_M": after_m, "after eta_L": after_l, CONTROL: control}
    return _claim(findings(CONFIG, [], [], {k: v for k, v in reverse.items() if v}, []), "(c)")


def test_revival_holds_after_eta_m_and_not_after_eta_l():
    finding = _reverse(_arm(_curve(0.0, 10), _curve(0.0, 20)), _arm(_curve(0.0, None), _curve(0.1, None)))
    assert finding["outcome"] == HELD


def test_revival_fails_when_the_eta_l_model_revives():
    finding = _reverse(_arm(_curve(0.0, 10), _curve(0.0, 20)), _arm(_curve(0.0, None), _curve(0.0, 50)))
    assert finding["outcome"] == FAILED and "after eta_L seed 1" in finding["reason"]


def test_revival_fails_when_slower_than_the_control():
    control = _arm(_curve(0.3, 5), _curve(0.3, 5))
    after_l = _arm(_curve(0.0, None), _curve(0.0, None))
    assert _reverse(_arm(_curve(0.0, 10), _curve(0.0, 3)), after_l, control)["outcome"] == FAILED
    assert _reverse(_arm(_curve(0.0, None), _curve(0.0, 3)), after_l, control)["outcome"] == FAILED


def test_revival_censored_by_the_horizon_is_inconclusive():
    control = _arm(_curve(0.3, None), _curve(0.3, None))
    after_l = _arm(_curve(0.0, None), _curve(0.0, None))
    finding = _reverse(_arm(_curve(0.0, None), _curve(0.0, 10)), after_l, control)
    assert finding["outcome"] == INCONCLUSIVE and "censored" in finding["reason"]


def test_revival_is_not_testable_when_count_a_was_never_lost():
    finding = _reverse(_arm(_curve(0.95, 0), _curve(0.97, 0)), _arm(_curve(0.92, 0), _curve(0.99, 0)))
    assert finding["outcome"] == UNTESTABLE and "never lost" in finding["reason"]


def test_revival_without_an_eta_l_arm_cannot_hold():
    finding = _reverse(_arm(_curve(0.0, 10), _curve(0.0, 20)), None)
    assert finding["outcome"] == INCONCLUSIVE and "eta_L is not in reverse_after" in finding["reason"]


# --- (e) the longer arm, (d) Max-identifier -----------------------------------------------------------------


def test_longer_arm_fails_where_a_run_does_not_count_b():
    long = {
        "steps": 1000,
        "table3": [_row("L", 0.0, [_run(0, 1.0, 1.0)]), _row("M", 0.0, [_run(0, 0.3, 0.28)])],
    }
    finding = _claim(findings(CONFIG, [], [], {}, [], long), "(e")
    assert finding["outcome"] == FAILED and "eta_M C_Tr=0 seed 0" in finding["reason"]
    long["table3"][1] = _row("M", 0.0, [_run(0, 0.99, 0.97)])
    assert _claim(findings(CONFIG, [], [], {}, [], long), "(e")["outcome"] == HELD


def _max_id(*runs: dict) -> dict:
    table = [_row("VS", 1.0, list(runs), program="max_identifier")]
    return _claim(findings(CONFIG, [], [], {}, table), "(d)")


def test_max_identifier_must_clear_the_wrapper_floor_as_well_as_80_percent():
    assert _max_id(_run(0, 0.9, 0.90, floor=0.3), _run(1, 0.9, 0.88, floor=0.3))["outcome"] == HELD
    assert _max_id(_run(0, 0.9, 0.90, floor=0.3), _run(1, 0.9, 0.70, floor=0.3))["outcome"] == FAILED
    assert _max_id(_run(0, 0.9, 0.85, floor=0.84), _run(1, 0.9, 0.90, floor=0.3))["outcome"] == FAILED


def test_claims_without_any_data_are_left_out():
    assert findings(CONFIG, [], [], {}, []) == []
