"""The GAM study's claims, checked on its own numbers with ``interp.claims`` (held / did not hold /
inconclusive / not testable). Each criterion is stated in the finding, and hand-made results fail each one
in the tests."""

from typing import Any

from interp.claims import all_seeds, finding, not_testable

LINEAR_SLOPE = 1.25  # a log-log cost slope at or below this is linear in sequence length
SLOPE_GAP = 0.25  # the transformer's slope must exceed GAM's by this much to be the steeper
SLOPE_TIE = 0.05  # ... and by less than this the two are the same
LOSS_TOLERANCE = 0.05  # nats: 'competitive' validation loss
LEARNED = 0.9  # count-a accuracy of a model that counts
NOT_LEARNED = 0.5  # below this a model does not count
NEAR_FLOOR = 0.1  # within this of the majority floor is chance


def _cost_findings(tp: dict[str, Any]) -> list[dict]:
    """The paper's cost claims against its baseline, the transformer whose attention pattern is materialised;
    then the same two against the transformer the study trains, on fused attention (SDPA), which keeps no
    N x N pattern."""
    gam = tp["gam"]["time_slope"]
    out = [
        finding(
            "GAM's training cost is linear in sequence length (O(N))",
            f"log-log slope of seconds per step vs length: {gam:.2f}",
            gam <= LINEAR_SLOPE,
            f"held if the slope is <= {LINEAR_SLOPE}",
        )
    ]
    for name, transformer in (
        ("transformer_materialised", "the transformer"),
        ("transformer", "a transformer on fused attention (SDPA; beyond the paper)"),
    ):
        tr = tp[name]["time_slope"]
        mem_gam, mem_tr = tp["gam"]["rows"][-1]["activation_mib"], tp[name]["rows"][-1]["activation_mib"]
        gap = tr - gam
        out += [
            finding(
                f"the cost of {transformer} grows faster than GAM's (quadratic attention)",
                f"transformer slope {tr:.2f} vs GAM {gam:.2f}",
                True if gap >= SLOPE_GAP else False if gap < SLOPE_TIE else None,
                f"held if the transformer's slope exceeds GAM's by >= {SLOPE_GAP}; not if by < {SLOPE_TIE}",
            ),
            finding(
                f"GAM needs less memory than {transformer} at long sequences",
                f"activation memory at {tp['gam']['rows'][-1]['length']} tokens: GAM {mem_gam:.1f} MiB, "
                f"transformer {mem_tr:.1f} MiB",
                mem_gam < mem_tr,
                "held if GAM's activation memory is below the transformer's at the longest length",
            ),
        ]
    return out


def _lm_findings(lm: dict[str, Any]) -> list[dict]:
    rows = lm["per_seed"]

    def speeds(r: dict) -> str:
        return f"{r['gam']['seconds_per_step']:.3f} vs {r['transformer']['seconds_per_step']:.3f} s"

    out = [
        finding(
            "GAM trains faster than a transformer of the same size",
            "seconds per step, GAM vs transformer, per seed: " + "; ".join(speeds(r) for r in rows),
            all_seeds([r["gam"]["seconds_per_step"] < r["transformer"]["seconds_per_step"] for r in rows]),
            "held if GAM's step is faster in every seed",
        )
    ]
    for key, what in (
        ("equal_steps_loss", "after equal steps"),
        ("equal_time_loss", "after equal wall time"),
    ):
        measured = "; ".join(
            f"GAM {r['gam'][key]:.3f} vs transformer {r['transformer'][key]:.3f}" for r in rows
        )
        out.append(
            finding(
                f"GAM's validation loss is equal or better {what}",
                f"validation loss (nats) per seed: {measured}",
                all_seeds([r["gam"][key] <= r["transformer"][key] + LOSS_TOLERANCE for r in rows]),
                f"held if GAM's loss is within {LOSS_TOLERANCE} nats of the transformer's or lower in every seed",
            )
        )
    return out


def _rf_findings(rf: dict[str, Any]) -> list[dict]:
    cpu, covered = rf["cpu_window"], rf["covered"]
    runs = rf["runs"].get("gam/cpu_window", [])
    measured = ", ".join(f"{r['accuracy']:.3f} (floor {r['floor']:.3f})" for r in runs)
    claim = "a GAM cannot count past its receptive field L(k-1)+1"
    if cpu["receptive_field"] >= cpu["seq_len"]:
        blind = not_testable(claim, measured, "the GAM reads the whole cpu-window sequence")
    else:
        checks = [
            True
            if r["accuracy"] < r["floor"] + NEAR_FLOOR
            else False
            if r["accuracy"] >= NOT_LEARNED
            else None
            for r in runs
        ]
        blind = finding(
            claim,
            f"receptive field {cpu['receptive_field']} of {cpu['seq_len']} tokens; count-a accuracy {measured}",
            all_seeds(checks),
            f"held if accuracy stays within {NEAR_FLOOR} of the majority floor; not if it reaches {NOT_LEARNED}",
        )
    gam = rf["runs"].get("gam/pt_low", [])
    learned = finding(
        "a GAM learns to count at a window its receptive field covers",
        f"receptive field {covered['receptive_field']} of {covered['seq_len']} tokens; count-a accuracy "
        + ", ".join(f"{r['accuracy']:.3f}" for r in gam),
        all_seeds(
            [
                True if r["accuracy"] >= LEARNED else False if r["accuracy"] < NOT_LEARNED else None
                for r in gam
            ]
        ),
        f"held if >= {LEARNED} in every seed; not if any is below {NOT_LEARNED}",
    )
    return [blind, learned]


def _wrapper_findings(rows: list[dict[str, Any]]) -> list[dict]:
    out = []
    for arch in ("transformer", "gam"):
        mine = [r for r in rows if r["arch"] == arch]
        labels = ", ".join(r["audit_label"] for r in mine)
        claim = f"{arch}: fine-tuning with the spurious correlation wraps counting a rather than removing it"
        if any(r["pt_low_count_a"] < LEARNED for r in mine):
            out.append(
                not_testable(claim, f"audit labels {labels}", f"a pretrained model counts a below {LEARNED}")
            )
            continue
        wrapped = [
            True if r["audit_label"] == "wrapped" else False if r["audit_label"] == "removed" else None
            for r in mine
        ]
        out.append(
            finding(
                claim,
                f"audit labels per seed: {labels}",
                all_seeds(wrapped),
                "held if every seed's audit says wrapped; not if any says removed",
            )
        )

        def faster(r: dict) -> bool | None:
            ft, ctrl = r["reverse_steps_ft"], r["reverse_steps_control"]
            if ft is None:
                return None if ctrl is None else False
            return True if ctrl is None or ft < ctrl else False

        steps = "; ".join(f"{r['reverse_steps_ft']} vs {r['reverse_steps_control']}" for r in mine)
        out.append(
            finding(
                f"{arch}: reverse fine-tuning revives counting a faster than the never-had-it control learns it",
                f"steps to 90% of the pretrained accuracy, fine-tuned vs Scr.+FT (None: not reached): {steps}",
                all_seeds([faster(r) for r in mine]),
                "held if the fine-tuned model reaches the threshold first in every seed",
            )
        )
    return out


def check_findings(summary: dict[str, Any]) -> list[dict]:
    """Every claim of the study, checked on ``summary``'s numbers."""
    return [
        *_cost_findings(summary["throughput"]),
        *_lm_findings(summary["lm"]),
        *_rf_findings(summary["receptive_field"]),
        *_wrapper_findings(summary["wrapper"]),
    ]
