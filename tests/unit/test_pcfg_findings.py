"""The PCFG study's claims on hand-made results: each can hold, fail, stay inconclusive or be not testable."""

import pytest

from analyses.pcfg.findings import findings

N = 1000


def agg(values):
    return {"mean": sum(values) / len(values), "values": list(values)}


def ft_row(
    level="M", *, b1=(1.0, 1.0), b0=(0.2, 0.21), strict=(0.0, 0.004), floor=(0.2, 0.2), a0=(0.38, 0.4)
):
    return {
        "prior": "low",
        "lr_level": level,
        "c_tr": 1.0,
        "name": f"low / eta_{level} / C_Tr=1",
        "final": {
            "count_b@cte1": agg(b1),
            "count_b@cte0": agg(b0),
            "count_b@cte0strict": agg(strict),
            "count_a@cte0": agg(a0),
        },
        "shortcut_floor_b0": agg(floor),
        "majority_floor_a0": agg((0.4, 0.4)),
    }


def seed(value, lower_bound=False):
    return {"value": value, "lower_bound": lower_bound}


def results(*, rows=None, speedups=None, medium_count_b=(0.99, 0.98), auc=((0.6, 0.7), (0.3, 0.4))):
    return {
        "preset": {"final_eval_n": N},
        "finetune": rows if rows is not None else [ft_row()],
        "pretrain": {"medium": {"final": {"count_b@cte0": agg(medium_count_b)}}},
        "revival": {
            "speedups": speedups or {},
            "metrics": {
                "FT(medium, eta_M, C_Tr=1)": {"auc": list(auc[0])},
                "FT(low, eta_M, C_Tr=1)": {"auc": list(auc[1])},
            },
        },
    }


def outcome(res, start: str) -> str:
    [found] = [f for f in findings(res) if f["claim"].startswith(start)]
    return found["outcome"]


def test_a_wrapper_holds_and_each_broken_part_fails_it():
    assert outcome(results(), "wrapper signature") == "held"
    broken = {
        "weak at C_Te=1": ft_row(b1=(1.0, 0.85)),
        "solves the strict C_Te=0": ft_row(strict=(0.0, 0.05)),
        "away from the shortcut floor": ft_row(b0=(0.2, 0.45)),
    }
    for row in broken.values():
        assert outcome(results(rows=[row]), "wrapper signature") == "did not hold"


def test_collapse_is_tied_to_the_majority_floor_per_seed():
    assert outcome(results(), "behavioural loss") == "held"
    # Half the pretrained accuracy, but above the majority floor's interval in one seed: not a collapse.
    assert outcome(results(rows=[ft_row(a0=(0.38, 0.5))]), "behavioural loss") == "did not hold"


def test_our_eta_pt_arm_is_named_ours_and_the_study_arms_are_not_checked_for_signature():
    res = results(rows=[ft_row(level="PT")])
    assert not [f for f in findings(res) if f["claim"].startswith("wrapper signature")]


@pytest.mark.parametrize(
    "items, expected",
    [
        ([seed(12.0), seed(8.0, True)], "held"),
        ([seed(12.0), seed(3.0)], "did not hold"),
        ([seed(12.0), seed(None)], "did not hold"),
        ([seed(12.0), seed(3.0, True)], "inconclusive"),
    ],
)
def test_fast_revival_per_seed(items, expected):
    res = results(speedups={"FT(low, eta_M, C_Tr=1)": {"Scr.+FT": {"per_seed": items}}})
    assert outcome(res, "fast revival") == expected


def test_damage_at_eta_pt_is_ours_and_fails_when_it_revives_fast():
    name = "FT(low, eta_PT (ours), C_Tr=1)"
    fast = results(speedups={name: {"Scr.+FT": {"per_seed": [seed(20.0), seed(9.0)]}}})
    assert outcome(fast, "ours, damage at eta_PT") == "did not hold"
    slow = results(speedups={name: {"Scr.+FT": {"per_seed": [seed(1.2), seed(None)]}}})
    assert outcome(slow, "ours, damage at eta_PT") == "held"


def test_ordering_is_not_testable_when_the_medium_prior_is_not_strongly_relevant():
    assert outcome(results(), "ordering") == "held"
    assert outcome(results(auc=((0.6, 0.3), (0.3, 0.4))), "ordering") == "did not hold"
    weak = results(medium_count_b=(0.74, 0.99))
    assert outcome(weak, "ordering") == "not testable"
    [found] = [f for f in findings(weak) if f["claim"].startswith("ordering")]
    assert "74.0%" in found["reason"]
