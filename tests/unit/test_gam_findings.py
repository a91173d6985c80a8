"""The GAM study's claims can fail: hand-made results that break each one give 'did not hold' (or 'not
testable' where a precondition fails), and results that meet each give 'held'."""

import pytest

from analyses.gam.findings import check_findings
from analyses.gam.results import loglog_slope, loss_at


def _summary(
    *,
    gam_slope: float = 1.0,
    tr_slope: float = 1.8,
    mem: tuple = (1.0, 4.0),
    fused_slope: float = 1.4,
    fused_mem: float = 2.0,
    step: tuple = (0.05, 0.15),
    loss: tuple = (3.0, 3.0),
    cpu_acc: float = 0.2,
    covered_acc: float = 0.99,
    labels: tuple = ("wrapped", "wrapped"),
    reverse: tuple = (20, None),
    pt_acc: float = 0.99,
) -> dict:
    def tp(slope: float, mib: float) -> dict:
        return {"time_slope": slope, "memory_slope": slope, "rows": [{"length": 2048, "activation_mib": mib}]}

    def lm(arch_step: float, arch_loss: float) -> dict:
        return {"seconds_per_step": arch_step, "equal_steps_loss": arch_loss, "equal_time_loss": arch_loss}

    runs = {
        "gam/cpu_window": [{"seed": s, "accuracy": cpu_acc, "floor": 0.2, "n": 1000} for s in (0, 1)],
        "gam/pt_low": [{"seed": s, "accuracy": covered_acc, "floor": 0.2, "n": 1000} for s in (0, 1)],
    }
    wrapper = [
        {"arch": arch, "seed": s, "audit_label": labels[s], "pt_low_count_a": pt_acc}
        | {"reverse_steps_ft": reverse[0], "reverse_steps_control": reverse[1]}
        for arch in ("transformer", "gam")
        for s in (0, 1)
    ]
    return {
        "throughput": {
            "gam": tp(gam_slope, mem[0]),
            "transformer_materialised": tp(tr_slope, mem[1]),
            "transformer": tp(fused_slope, fused_mem),
        },
        "lm": {
            "per_seed": [{"gam": lm(step[0], loss[0]), "transformer": lm(step[1], loss[1])} for _ in (0, 1)]
        },
        "receptive_field": {
            "cpu_window": {"receptive_field": 7, "seq_len": 49},
            "covered": {"receptive_field": 22, "seq_len": 21},
            "runs": runs,
        },
        "wrapper": wrapper,
    }


def _outcomes(summary: dict) -> dict[str, str]:
    return {f["claim"]: f["outcome"] for f in check_findings(summary)}


def test_results_that_meet_every_claim_hold() -> None:
    assert set(_outcomes(_summary()).values()) == {"held"}


@pytest.mark.parametrize(
    "change, claim",
    [
        ({"gam_slope": 1.6}, "GAM's training cost is linear"),
        ({"tr_slope": 1.02}, "the cost of the transformer grows faster"),
        ({"mem": (5.0, 4.0)}, "GAM needs less memory than the transformer"),
        ({"fused_slope": 1.02}, "the cost of a transformer on fused attention"),
        ({"fused_mem": 0.5}, "GAM needs less memory than a transformer on fused attention"),
        ({"step": (0.2, 0.15)}, "GAM trains faster"),
        ({"loss": (3.2, 3.0)}, "GAM's validation loss is equal or better after equal steps"),
        ({"cpu_acc": 0.8}, "a GAM cannot count past its receptive field"),
        ({"covered_acc": 0.3}, "a GAM learns to count"),
        ({"labels": ("wrapped", "removed")}, "gam: fine-tuning with the spurious correlation"),
        ({"reverse": (50, 20)}, "gam: reverse fine-tuning revives"),
    ],
)
def test_each_claim_can_fail(change: dict, claim: str) -> None:
    outcomes = _outcomes(_summary(**change))
    matching = [outcome for text, outcome in outcomes.items() if text.startswith(claim)]
    assert matching == ["did not hold"]


def test_wrapper_claims_are_not_testable_without_the_capability_and_censoring_is_inconclusive() -> None:
    outcomes = _outcomes(_summary(pt_acc=0.6))
    assert {o for c, o in outcomes.items() if "wraps counting a" in c} == {"not testable"}
    outcomes = _outcomes(_summary(reverse=(None, None), labels=("intact", "inconclusive")))
    assert {o for c, o in outcomes.items() if ": " in c} == {"inconclusive"}


def test_slopes_and_equal_time_losses() -> None:
    assert loglog_slope([128, 512, 2048], [1.0, 4.0, 16.0]) == pytest.approx(1.0)
    assert loglog_slope([128, 512, 2048], [1.0, 16.0, 256.0]) == pytest.approx(2.0)
    curve = [
        {"seconds": 0.0, "val_loss": 5.0},
        {"seconds": 2.0, "val_loss": 4.0},
        {"seconds": 4.0, "val_loss": 3.0},
    ]
    assert loss_at(curve, 3.0) == 4.0 and loss_at(curve, 4.0) == 3.0
