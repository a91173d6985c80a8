"""The audit returns the expected verdict on constructed evidence, with per-test results and CIs."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interp import hooks
from interp.audit import AuditEvidence, AuditThresholds, audit, collect_evidence
from interp.batches import Batch, EvalSet
from interp.config import from_json, to_json
from interp.errors import ConfigError, DataError
from interp.probing import ProbeConfig
from tests.unit.test_pruning import pretrained_and_planted

# A value outside a Literal: ConfigError, or a TypeError first when jaxtyping checks are on.
LITERAL_ERRORS = (ConfigError, TypeError)


def evidence(**overrides) -> AuditEvidence:
    """Lost behaviour (0.9 -> 0.1, floor 0.1) with every internal test passing, unless overridden."""
    base = dict(
        pt_accuracy=0.9,
        ft_accuracy=0.1,
        accuracy_floor=0.1,
        probe_pt=0.8,
        probe_ft=0.78,
        probe_floor=0.3,
        prune_curve=(0.1, 0.3, 0.7, 0.85) + (0.8,) * 12,
        revival_speedup=10.0,
    )
    return AuditEvidence(**{**base, **overrides})


REMOVED = dict(probe_ft=0.32, prune_curve=(0.1,) * 16, revival_speedup=1.2)


def test_intact_when_behaviour_is_kept():
    verdict = audit(evidence(ft_accuracy=0.85))
    assert verdict.label == "intact"
    assert verdict.tests["behaviour"] is True


def test_wrapped_when_internal_tests_pass():
    verdict = audit(evidence())
    assert verdict.label == "wrapped"
    assert verdict.tests == {"behaviour": False, "probe": True, "pruning": True, "revival": True}
    recovery = next(c for c in verdict.evidence if c.statistic.startswith("fraction"))
    assert recovery.value == pytest.approx((0.85 - 0.1) / (0.9 - 0.1))


def test_removed_when_no_internal_evidence_survives():
    verdict = audit(evidence(**REMOVED))
    assert verdict.label == "removed"
    assert verdict.tests == {"behaviour": False, "probe": False, "pruning": False, "revival": False}
    assert "failed: probe, pruning, revival" in verdict.reason


def test_conflicts_follow_the_rule():
    one_of_three = evidence(probe_ft=0.32, prune_curve=(0.1,) * 16)  # only revival passes
    assert audit(one_of_three).label == "removed"
    assert audit(one_of_three, AuditThresholds(rule="any")).label == "wrapped"
    one_of_two = evidence(probe_ft=0.32, prune_curve=None)  # a tie goes to wrapped
    assert audit(one_of_two).label == "wrapped"
    assert audit(one_of_two, AuditThresholds(rule="all")).label == "removed"
    assert audit(one_of_two).tests["pruning"] is None


def test_probe_needs_both_ratio_and_margin_over_floor():
    near_floor = evidence(
        probe_pt=0.35, probe_ft=0.34, probe_floor=0.32, prune_curve=None, revival_speedup=None
    )
    assert audit(near_floor).tests["probe"] is False


def test_pruning_counts_only_units_within_k_max_and_never_k0():
    late = evidence(prune_curve=(0.1,) * 16 + (0.9,), probe_pt=None, probe_ft=None, revival_speedup=None)
    assert audit(late).label == "removed"
    assert audit(late, AuditThresholds(prune_k_max=16)).label == "wrapped"
    # a fine-tuned model at 0.6 (still lost: < 0.9 x 0.9): pruning must improve on 0.6, not on the floor
    partial = evidence(
        ft_accuracy=0.6, prune_curve=(0.6,) * 16, probe_pt=None, probe_ft=None, revival_speedup=None
    )
    assert audit(partial).label == "removed"


def test_missing_or_meaningless_evidence_raises():
    with pytest.raises(DataError, match="cannot tell"):
        audit(evidence(probe_pt=None, probe_ft=None, prune_curve=None, revival_speedup=None))
    with pytest.raises(DataError, match="no capability"):
        audit(evidence(pt_accuracy=0.1))
    with pytest.raises(ConfigError):
        evidence(ft_accuracy=1.5)
    with pytest.raises(ConfigError):
        evidence(probe_pt=None)
    with pytest.raises(LITERAL_ERRORS):
        AuditThresholds(rule="vote")


def test_several_seeds_give_cis_and_per_seed_labels():
    rng = np.random.default_rng(0)
    seeds = [
        evidence(
            ft_accuracy=float(rng.uniform(0.05, 0.15)),
            probe_ft=float(rng.uniform(0.74, 0.8)),
            revival_speedup=float(rng.uniform(6, 14)),
            seed=s,
        )
        for s in range(5)
    ]
    seeds.append(evidence(**REMOVED, seed=5))
    verdict = audit(seeds)
    assert verdict.label == "wrapped"
    assert verdict.seed_labels == ("wrapped",) * 5 + ("removed",)
    for check in verdict.evidence:
        assert check.ci_low <= check.value <= check.ci_high
        assert len(check.per_seed) == 6
    behaviour = verdict.evidence[0]
    assert behaviour.robust is True  # every seed lost the behaviour
    payload = json.loads(json.dumps(verdict.to_json()))
    assert payload["n_seeds"] == 6 and payload["label"] == "wrapped"


def test_single_seed_with_n_eval_gets_wilson_intervals():
    verdict = audit(evidence(n_eval=500))
    low, high = verdict.accuracy_ci["ft_accuracy"]
    assert low < 0.1 < high
    assert "pruned_accuracy" in verdict.accuracy_ci


@settings(max_examples=25)
@given(
    ratio=st.floats(0.01, 1.0),
    k_max=st.integers(1, 100),
    rule=st.sampled_from(["majority", "any", "all"]),
    margin=st.floats(0.0, 0.5),
)
def test_thresholds_round_trip_through_json(ratio, k_max, rule, margin):
    thresholds = AuditThresholds(behaviour_ratio=ratio, prune_k_max=k_max, rule=rule, probe_margin=margin)
    assert from_json(AuditThresholds, to_json(thresholds)) == thresholds


def test_evidence_round_trips_so_saved_results_can_be_audited_again():
    saved = evidence(n_eval=300, seed=2, name="run")
    assert from_json(AuditEvidence, json.dumps(saved.to_json())) == saved
    assert audit(from_json(AuditEvidence, json.dumps(saved.to_json()))).label == "wrapped"


def test_collect_evidence_on_a_planted_wrapper():
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 64, (160, 16), generator=gen)
    tokens[:, 15] = torch.randint(0, 4, (160,), generator=gen)  # the probed token: 4 values
    pretrained, finetuned, batch = pretrained_and_planted(tokens)
    batch = Batch(
        tokens=batch.tokens, answer_pos=batch.answer_pos, answers=batch.answers, labels={"tok": tokens[:, 15]}
    )
    pt_eval = EvalSet("pt", batch.slice(0, 80))
    result = collect_evidence(
        pretrained,
        finetuned,
        pt_eval=pt_eval,
        prune_data=batch.slice(80, 160),
        probe_data=batch,
        probe_label="tok",
        probe_hook_names=[hooks.embedding_output(), hooks.resid_post(1)],
        probe_config=ProbeConfig(steps=200, lr=1e-2),
        k_max=3,
        revival_speedup=8.0,
        seed=0,
    )
    assert result.pt_accuracy == 1.0 and result.ft_accuracy < 0.1
    assert result.prune_curve[0] == result.ft_accuracy and result.prune_curve[1] == 1.0
    assert result.probe_ft >= 0.9 and result.n_eval == 80
    verdict = audit(result, AuditThresholds(prune_k_max=3))
    assert verdict.label == "wrapped" and verdict.tests["pruning"] is True
