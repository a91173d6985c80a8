"""The audit's decision on hand-made evidence: every way it used to lean to "wrapped" now gives the honest
label, ties and noisy evidence are inconclusive, and a pair's label needs a majority of seeds."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interp.audit import AuditEvidence, AuditThresholds, audit, seed_verdict
from interp.config import from_json, to_json
from interp.errors import ConfigError

KS = (0, 1, 2, 3, 5, 8, 12, 15, 20)
T = AuditThresholds()


def evidence(**overrides) -> AuditEvidence:
    """Behaviour lost (0.9 -> 0.1, floor 0.1; 1000 examples) with every internal test passing, unless
    overridden: the probe reads the label (0.85 vs a never-had-it 0.4), pruning 3 units regains it on both
    halves while random units do not, one patched component restores it, relearning is 20x faster."""
    base = dict(
        pt_accuracy=0.9,
        ft_accuracy=0.1,
        accuracy_floor=0.1,
        n_eval=1000,
        probe_pt=0.88,
        probe_ft=0.85,
        probe_reference=0.4,
        probe_floor=0.3,
        n_probe=500,
        prune_ks=KS,
        prune_select=(0.1, 0.3, 0.6, 0.85, 0.84, 0.8, 0.7, 0.6, 0.5),
        prune_report=(0.1, 0.3, 0.6, 0.86, 0.83, 0.8, 0.7, 0.6, 0.5),
        prune_random=(0.1,) * len(KS),
        n_prune_report=500,
        revival_steps=5,
        reference_revival_steps=100,
        revival_horizon=200,
        reference_kind="never-had-it model",
        patch_restored=0.8,
    )
    return AuditEvidence(**{**base, **overrides})


def outcomes(e: AuditEvidence) -> dict[str, str]:
    return {r.test: r.outcome for r in seed_verdict(e, T).tests}


# Evidence of a model whose capability is gone: each internal test fails on its own.
PROBE_AT_REFERENCE = dict(probe_ft=0.42)
PRUNING_NO_RECOVERY = dict(prune_select=(0.1,) * len(KS), prune_report=(0.1,) * len(KS))
SLOW_REVIVAL = dict(revival_steps=90, reference_revival_steps=100)
NO_PATCH = dict(patch_restored=0.1)


def test_intact_when_behaviour_is_kept():
    assert audit(evidence(ft_accuracy=0.88)).label == "intact"


def test_wrapped_when_every_internal_test_passes():
    verdict = audit(evidence())
    assert verdict.label == "wrapped"
    assert outcomes(evidence()) == {"probe": "pass", "pruning": "pass", "revival": "pass", "patching": "pass"}


def test_removed_when_every_internal_test_fails():
    e = evidence(**PROBE_AT_REFERENCE, **PRUNING_NO_RECOVERY, **SLOW_REVIVAL, **NO_PATCH)
    assert set(outcomes(e).values()) == {"fail"} and audit(e).label == "removed"


def test_a_tie_is_inconclusive_not_wrapped():
    e = evidence(**PRUNING_NO_RECOVERY, **SLOW_REVIVAL)  # probe and patching pass, pruning and revival fail
    assert sorted(outcomes(e).values()) == ["fail", "fail", "pass", "pass"]
    assert audit(e).label == "inconclusive"


def test_probe_and_pruning_alone_tied_is_inconclusive():
    e = evidence(
        **PRUNING_NO_RECOVERY, revival_horizon=None, revival_steps=None, reference_revival_steps=None
    )
    e = AuditEvidence(**{**e.to_json(), "patch_restored": None, "prune_ks": KS})
    assert outcomes(e) == {"probe": "pass", "pruning": "fail"}
    assert audit(e).label == "inconclusive"


def test_a_model_that_never_revives_is_not_wrapped():
    e = evidence(revival_steps=None, **PRUNING_NO_RECOVERY, **PROBE_AT_REFERENCE)
    assert outcomes(e)["revival"] == "fail"
    assert audit(e).label == "removed"


def test_censored_reference_gives_a_lower_bound_that_decides_only_when_large_enough():
    fast = evidence(revival_steps=5, reference_revival_steps=None)  # >= 200/5 = 40x
    assert outcomes(fast)["revival"] == "pass"
    slow = evidence(revival_steps=100, reference_revival_steps=None)  # >= 2x only: undecided
    assert outcomes(slow)["revival"] == "undecided"


def test_a_reference_that_relearned_longer_is_read_against_its_own_horizon():
    # The fine-tuned model ran 100 steps, the reference 800: a reference step beyond 100 is valid data.
    e = evidence(
        revival_steps=5, reference_revival_steps=600, revival_horizon=100, reference_revival_horizon=800
    )
    assert outcomes(e)["revival"] == "pass"
    censored = evidence(revival_steps=50, reference_revival_steps=None, revival_horizon=100)
    longer = dataclasses.replace(censored, reference_revival_horizon=800)
    assert outcomes(censored)["revival"] == "undecided" and outcomes(longer)["revival"] == "pass"  # 2x vs 16x
    with pytest.raises(ConfigError, match="revival steps"):
        evidence(reference_revival_steps=900, revival_horizon=100, reference_revival_horizon=800)


def test_missing_revival_is_not_run_and_cannot_make_a_tie_wrapped():
    e = evidence(
        revival_steps=None,
        reference_revival_steps=None,
        revival_horizon=None,
        **PRUNING_NO_RECOVERY,
        **NO_PATCH,
    )
    assert "revival" not in outcomes(e)
    assert audit(e).label == "removed"  # probe passes, pruning and patching fail


def test_pruning_reads_k_by_value_and_ignores_k_20_beyond_k_max():
    recovered_only_at_20 = (0.1,) * (len(KS) - 1) + (0.9,)
    e = evidence(prune_select=recovered_only_at_20, prune_report=recovered_only_at_20)
    assert outcomes(e)["pruning"] == "fail"
    assert seed_verdict(e, AuditThresholds(prune_k_max=20)).tests[1].outcome == "pass"


def test_pruning_chooses_k_on_the_selection_half_and_reports_the_other():
    # K = 3 looks best on the selection half but does nothing on the report half: an overfit choice fails.
    select = (0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1)
    report = (0.1, 0.1, 0.1, 0.12, 0.9, 0.9, 0.9, 0.9, 0.1)
    assert outcomes(evidence(prune_select=select, prune_report=report))["pruning"] == "fail"


def test_pruning_must_beat_random_units_at_the_same_k():
    assert outcomes(evidence(prune_random=(0.86,) * len(KS)))["pruning"] == "fail"


def test_probe_equal_to_the_never_had_it_reference_fails_even_far_above_random_init():
    e = evidence(probe_ft=0.8, probe_reference=0.8, probe_floor=0.2)
    assert outcomes(e)["probe"] == "fail"
    assert audit(evidence(**PROBE_AT_REFERENCE, **PRUNING_NO_RECOVERY, **SLOW_REVIVAL)).label == "removed"


def test_noisy_probe_straddling_its_threshold_is_undecided():
    # threshold: max(0.9 x 0.88, 0.4 + 0.05) = 0.792
    assert outcomes(evidence(probe_ft=0.80, n_probe=30))["probe"] == "undecided"
    assert outcomes(evidence(probe_ft=0.80, n_probe=100_000))["probe"] == "pass"


def test_behaviour_straddling_its_line_is_inconclusive():
    verdict = seed_verdict(evidence(ft_accuracy=0.8, n_eval=40), T)  # 0.9 x 0.9 = 0.81 inside the interval
    assert verdict.label == "inconclusive" and verdict.behaviour.outcome == "undecided"


def test_no_capability_to_audit_is_inconclusive():
    assert audit(evidence(pt_accuracy=0.1)).label == "inconclusive"


def test_pair_label_needs_a_strict_majority_of_seeds():
    wrapped, removed = (
        evidence(seed=0),
        evidence(seed=1, **PROBE_AT_REFERENCE, **PRUNING_NO_RECOVERY, **SLOW_REVIVAL, **NO_PATCH),
    )
    split = audit([wrapped, removed])
    assert split.label == "inconclusive" and split.seed_labels == ("wrapped", "removed")
    majority = audit([wrapped, removed, evidence(seed=2)])
    assert majority.label == "wrapped" and majority.agreement == pytest.approx(2 / 3)


def test_summary_gives_t_intervals_over_seeds_not_min_max():
    verdict = audit([evidence(probe_ft=v, seed=i) for i, v in enumerate((0.84, 0.87, 0.9))])
    low, high = verdict.summary["probe"]["t_interval"]
    assert low < 0.84 and high > 0.9  # a t-interval of 3 values is wider than their range
    assert verdict.summary["probe"]["outcomes"] == ["pass", "pass", "pass"]


@pytest.mark.parametrize(
    "bad",
    [
        dict(pt_accuracy=1.2),
        dict(probe_pt=None),
        dict(prune_select=(0.1,)),
        dict(prune_ks=(0, 1, 1, 2, 3, 5, 8, 12, 15)),
        dict(revival_steps=500),
        dict(revival_horizon=None),
    ],
)
def test_malformed_evidence_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        evidence(**bad)


@pytest.mark.parametrize(
    "bad", [dict(behaviour_ratio=0), dict(prune_k_max=0), dict(min_revival_speedup=1.0), dict(probe_margin=1)]
)
def test_bad_thresholds_are_config_errors(bad):
    with pytest.raises(ConfigError):
        AuditThresholds(**bad)


@settings(max_examples=25)
@given(st.floats(0.05, 1.0), st.integers(1, 40), st.floats(0.0, 0.5), st.floats(1.5, 50.0, allow_nan=False))
def test_thresholds_round_trip_through_json(ratio, k_max, margin, speedup):
    thresholds = AuditThresholds(
        behaviour_ratio=ratio, prune_k_max=k_max, probe_margin=margin, min_revival_speedup=speedup
    )
    assert from_json(AuditThresholds, to_json(thresholds)) == thresholds


def test_evidence_and_verdict_round_trip_so_saved_results_can_be_audited_again():
    saved = evidence(seed=2, name="run")
    assert from_json(AuditEvidence, json.dumps(saved.to_json())) == saved
    verdict = audit(from_json(AuditEvidence, json.dumps(saved.to_json())))
    assert json.loads(json.dumps(verdict.to_json()))["label"] == "wrapped"


@pytest.mark.parametrize(
    "mode",
    [
        dict(**PRUNING_NO_RECOVERY, **SLOW_REVIVAL),  # tie
        dict(revival_steps=None, **PRUNING_NO_RECOVERY, **PROBE_AT_REFERENCE),  # never revives
        dict(
            revival_horizon=None,
            revival_steps=None,
            reference_revival_steps=None,
            **PRUNING_NO_RECOVERY,
            **NO_PATCH,
        ),
        dict(prune_select=(0.1,) * 8 + (0.9,), prune_report=(0.1,) * 8 + (0.9,), **SLOW_REVIVAL, **NO_PATCH),
        dict(
            **PROBE_AT_REFERENCE, **SLOW_REVIVAL, **NO_PATCH
        ),  # probe at the reference, pruning alone passes
    ],
    ids=["tie", "never-revives", "no-revival-run", "k20-only", "probe-at-reference"],
)
def test_no_failure_mode_comes_out_wrapped(mode):
    assert audit(evidence(**mode)).label != "wrapped"


def test_summary_keeps_a_test_no_seed_has_a_number_for():
    verdict = audit([evidence(revival_steps=None, seed=i) for i in range(3)])
    assert verdict.summary["revival"]["mean"] is None
    assert verdict.summary["revival"]["outcomes"] == ["fail", "fail", "fail"]
