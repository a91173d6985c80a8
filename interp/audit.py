"""Was a pretraining capability removed by fine-tuning, only wrapped, or left intact? Or can we not tell?

``audit`` turns the evidence for one capability (per seed: ``AuditEvidence``) into one of four labels:

1. Behaviour: the fine-tuned model's accuracy on the capability is at least ``behaviour_ratio`` x the
   pretrained model's: ``intact``. Where the accuracy's Wilson interval straddles that line: ``inconclusive``.
2. Behaviour lost: four internal tests each pass, fail, or stay undecided (their interval straddles the
   threshold, or a censored revival leaves it open); a test without evidence is not run:
   - probe: the fine-tuned model's best-layer probe accuracy is >= ``probe_ratio`` x the pretrained model's and
     >= the never-had-it reference's probe + ``probe_margin`` (random init / majority when no reference);
   - pruning: over K in ``prune_ks`` with 0 < K <= ``prune_k_max`` (read by value), the best K is chosen on one
     half of the evaluation set; on the other half it must regain >= ``prune_recovery`` of the gap between
     max(floor, fine-tuned) and pretrained accuracy, and beat random units at the same K by ``prune_margin``;
   - revival: relearning reaches the threshold >= ``min_revival_speedup`` times faster than the never-had-it
     reference; a fine-tuned model that never reaches it within the horizon fails (no fast revival);
   - patching: one component of the base model patched into the fine-tuned one restores >= ``patch_restore``
     of the accuracy gap.
3. Wrapped when more tests pass than fail, removed when more fail than pass; a tie (or no decided test) is
   inconclusive. Each seed is labelled on its own; the pair's label needs a strict majority of seeds.
"""

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

from interp.config import to_dict
from interp.errors import ConfigError
from interp.stats import accuracy_ci, t_interval

Label = Literal["removed", "wrapped", "intact", "inconclusive"]
Outcome = Literal["pass", "fail", "undecided"]
TESTS = ("probe", "pruning", "revival", "patching")


@dataclass(frozen=True, kw_only=True)
class AuditThresholds:
    """The numbers that turn evidence into a verdict; every one is reported beside the result."""

    behaviour_ratio: float = 0.9  # intact if fine-tuned accuracy >= this x pretrained
    probe_ratio: float = 0.9  # probe retained if fine-tuned probe >= this x pretrained probe ...
    probe_margin: float = 0.05  # ... and >= the never-had-it reference's probe + this margin
    prune_k_max: int = 15  # most units pruning may remove (the study's Fig. 7 range)
    prune_recovery: float = 0.5  # fraction of the gap (pretrained - baseline) pruning must regain
    prune_margin: float = 0.05  # pruned accuracy must beat random units at the same K by this much
    min_revival_speedup: float = 5.0  # relearning at least this many times faster than the reference
    patch_restore: float = 0.5  # fraction of the accuracy gap one patched component must restore
    confidence: float = 0.95  # level of the Wilson and t intervals

    def __post_init__(self) -> None:
        for name in ("behaviour_ratio", "probe_ratio", "prune_recovery", "patch_restore"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("probe_margin", "prune_margin"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.prune_k_max < 1:
            raise ConfigError(f"prune_k_max must be >= 1, got {self.prune_k_max}")
        if not (self.min_revival_speedup > 1 and math.isfinite(self.min_revival_speedup)):
            raise ConfigError(f"min_revival_speedup must be a number > 1, got {self.min_revival_speedup}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence}")


@dataclass(frozen=True, kw_only=True)
class AuditEvidence:
    """The numbers of one run (one seed) for one capability; any task's results can fill it.

    Accuracies are fractions on the capability's evaluation set (``n_eval`` examples). Pruning gives the
    accuracy at each K of ``prune_ks`` on the selection half, on the report half, and for random units on
    the report half. Revival gives relearning steps-to-threshold of the fine-tuned model and of the
    never-had-it reference (None: censored at ``revival_horizon``); no horizon means revival was not run.
    """

    pt_accuracy: float  # pretrained model
    ft_accuracy: float  # fine-tuned model
    accuracy_floor: float = 0.0  # chance floor (majority answer, or a random-init model)
    n_eval: int | None = None  # evaluation examples (for Wilson intervals)
    probe_pt: float | None = None  # best-layer held-out probe accuracy: pretrained
    probe_ft: float | None = None  # ... fine-tuned
    probe_reference: float | None = None  # ... the never-had-it reference
    probe_floor: float | None = None  # ... random init, or the majority class
    n_probe: int | None = None  # held-out probe examples
    prune_ks: tuple[int, ...] | None = None
    prune_ranking: str | None = None  # how units were ranked (chosen on the selection half)
    prune_select: tuple[float, ...] | None = None  # accuracy after pruning K units, selection half
    prune_report: tuple[float, ...] | None = None  # ... report half
    prune_random: tuple[float, ...] | None = None  # ... K random units, report half
    n_prune_report: int | None = None
    revival_steps: int | None = None  # fine-tuned model's relearning steps to threshold (None: censored)
    reference_revival_steps: int | None = None  # the reference's (None: censored)
    revival_horizon: int | None = None  # relearning steps run; None: revival not measured
    reference_revival_horizon: int | None = (
        None  # the reference's, where it relearned longer (None: the same)
    )
    reference_kind: str | None = None  # what the reference is (never-had-it model, re-initialised copy)
    patch_restored: float | None = None  # largest fraction of the gap restored by one patched component
    seed: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for key in (
            "pt_accuracy",
            "ft_accuracy",
            "accuracy_floor",
            "probe_pt",
            "probe_ft",
            "probe_reference",
        ):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"evidence {key} must be an accuracy in [0, 1], got {value}")
        if (self.probe_pt is None) != (self.probe_ft is None):
            raise ConfigError("give both probe_pt and probe_ft, or neither")
        curves = (self.prune_select, self.prune_report, self.prune_random)
        if self.prune_ks is not None:
            if any(c is None or len(c) != len(self.prune_ks) for c in curves):
                raise ConfigError("prune_select, prune_report and prune_random need one accuracy per K")
            if len(set(self.prune_ks)) != len(self.prune_ks) or min(self.prune_ks) < 0:
                raise ConfigError(f"prune_ks must be distinct K >= 0, got {self.prune_ks}")
        reference_horizon = self.reference_revival_horizon or self.revival_horizon
        for steps, horizon in (
            (self.revival_steps, self.revival_horizon),
            (self.reference_revival_steps, reference_horizon),
        ):
            if steps is not None and (horizon is None or not 0 <= steps <= horizon):
                raise ConfigError("revival steps need a revival_horizon and must lie in [0, horizon]")

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TestResult:
    """One internal test of one seed: its statistic, the line it is held to, and the outcome."""

    test: str
    outcome: Outcome
    value: float | None  # the statistic (accuracy, recovery fraction, speed-up ...)
    threshold: float
    detail: str  # how the outcome was reached, in words


def _interval(accuracy: float, n: int | None, confidence: float) -> tuple[float, float]:
    if not n:
        return accuracy, accuracy
    return accuracy_ci(accuracy, n, confidence=confidence)


def _decide(low: float, high: float, threshold: float) -> Outcome:
    return "pass" if low >= threshold else "fail" if high < threshold else "undecided"


def _probe(e: AuditEvidence, t: AuditThresholds) -> TestResult | None:
    if e.probe_ft is None or e.probe_pt is None:
        return None
    reference = e.probe_reference if e.probe_reference is not None else (e.probe_floor or 0.0)
    what = "never-had-it reference" if e.probe_reference is not None else "random-init / majority floor"
    threshold = max(t.probe_ratio * e.probe_pt, reference + t.probe_margin)
    low, high = _interval(e.probe_ft, e.n_probe, t.confidence)
    detail = f"probe {e.probe_ft:.3f} vs max({t.probe_ratio:g} x pretrained {e.probe_pt:.3f}, {what} {reference:.3f} + {t.probe_margin:g})"
    return TestResult("probe", _decide(low, high, threshold), e.probe_ft, threshold, detail)


def _pruning(e: AuditEvidence, t: AuditThresholds) -> TestResult | None:
    if e.prune_ks is None:
        return None
    valid = [i for i, k in enumerate(e.prune_ks) if 0 < k <= t.prune_k_max]
    zero = e.prune_ks.index(0) if 0 in e.prune_ks else None
    baseline = max(e.accuracy_floor, e.prune_report[zero] if zero is not None else e.ft_accuracy)
    gap = e.pt_accuracy - baseline
    if not valid or gap <= 0:
        return None
    best = max(valid, key=lambda i: (e.prune_select[i], -e.prune_ks[i]))
    k, acc, rnd = e.prune_ks[best], e.prune_report[best], e.prune_random[best]
    low, high = _interval(acc, e.n_prune_report, t.confidence)
    need = baseline + t.prune_recovery * gap
    threshold = max(need, rnd + t.prune_margin)
    ranking = f" of the '{e.prune_ranking}' ranking" if e.prune_ranking else ""
    detail = (
        f"K={k}{ranking} (chosen on the selection half): {acc:.3f} on the report half vs baseline {baseline:.3f} + "
        f"{t.prune_recovery:g} x gap {gap:.3f} = {need:.3f}, and random units at K={k} {rnd:.3f} + {t.prune_margin:g}"
    )
    return TestResult(
        "pruning", _decide(low, high, threshold), (acc - baseline) / gap, t.prune_recovery, detail
    )


def _revival(e: AuditEvidence, t: AuditThresholds) -> TestResult | None:
    if e.revival_horizon is None:
        return None
    horizon, need = e.revival_horizon, t.min_revival_speedup
    ref_text = e.reference_kind or "reference"
    if e.revival_steps is None:
        return TestResult(
            "revival", "fail", None, need, f"not revived within {horizon} steps: no fast revival"
        )
    ft_steps = max(1, e.revival_steps)
    if e.reference_revival_steps is None:
        bound = max(1, e.reference_revival_horizon or horizon) / ft_steps
        outcome: Outcome = "pass" if bound >= need else "undecided"
        reference_horizon = e.reference_revival_horizon or horizon
        detail = f"revived in {e.revival_steps} steps; the {ref_text} not within {reference_horizon}: speed-up >= {bound:.1f}x"
        return TestResult("revival", outcome, bound, need, detail)
    value = max(1, e.reference_revival_steps) / ft_steps
    detail = (
        f"revived in {e.revival_steps} steps vs the {ref_text}'s {e.reference_revival_steps}: {value:.1f}x"
    )
    return TestResult("revival", "pass" if value >= need else "fail", value, need, detail)


def _patching(e: AuditEvidence, t: AuditThresholds) -> TestResult | None:
    if e.patch_restored is None:
        return None
    outcome: Outcome = "pass" if e.patch_restored >= t.patch_restore else "fail"
    detail = f"one patched component restores {e.patch_restored:.2f} of the gap"
    return TestResult("patching", outcome, e.patch_restored, t.patch_restore, detail)


@dataclass(frozen=True)
class SeedVerdict:
    """The label of one seed, with its behaviour check and the outcome of each internal test."""

    label: Label
    reason: str
    behaviour: TestResult | None
    tests: tuple[TestResult, ...]
    seed: int | None

    def to_json(self) -> dict:
        return asdict(self)


def behaviour_test(e: AuditEvidence, t: AuditThresholds) -> TestResult:
    """Does the fine-tuned model still perform the capability (its Wilson interval against the line)?"""
    need = t.behaviour_ratio * e.pt_accuracy
    low, high = _interval(e.ft_accuracy, e.n_eval, t.confidence)
    detail = f"fine-tuned {e.ft_accuracy:.3f} vs {t.behaviour_ratio:g} x pretrained {e.pt_accuracy:.3f} = {need:.3f}"
    return TestResult("behaviour", _decide(low, high, need), e.ft_accuracy, need, detail)


def seed_verdict(e: AuditEvidence, t: AuditThresholds) -> SeedVerdict:
    """Label one seed's evidence: intact, wrapped, removed or inconclusive."""
    if e.pt_accuracy <= e.accuracy_floor:
        reason = f"pretrained accuracy {e.pt_accuracy:.3f} is not above its floor {e.accuracy_floor:.3f}: nothing to audit"
        return SeedVerdict("inconclusive", reason, None, (), e.seed)
    behaviour = behaviour_test(e, t)
    if behaviour.outcome == "pass":
        return SeedVerdict(
            "intact", "the fine-tuned model still performs the capability", behaviour, (), e.seed
        )
    if behaviour.outcome == "undecided":
        return SeedVerdict(
            "inconclusive", "the behaviour's interval straddles the line", behaviour, (), e.seed
        )
    tests = tuple(r for r in (_probe(e, t), _pruning(e, t), _revival(e, t), _patching(e, t)) if r is not None)
    votes = Counter(r.outcome for r in tests)
    label: Label = (
        "wrapped"
        if votes["pass"] > votes["fail"]
        else "removed"
        if votes["fail"] > votes["pass"]
        else "inconclusive"
    )
    reason = (
        f"behaviour lost; {votes['pass']} test(s) pass, {votes['fail']} fail, {votes['undecided']} undecided "
        f"({', '.join(f'{r.test}: {r.outcome}' for r in tests) or 'no test had evidence'})"
    )
    return SeedVerdict(label, reason, behaviour, tests, e.seed)


@dataclass(frozen=True)
class Verdict:
    """The pair's label (a strict majority of seeds, else inconclusive), each seed's verdict, and per test
    the mean statistic over seeds with its t-interval."""

    label: Label
    reason: str
    seeds: tuple[SeedVerdict, ...]
    summary: dict[str, dict] = field(default_factory=dict)  # test -> {mean, t_interval, per_seed, outcomes}
    thresholds: AuditThresholds = field(default_factory=AuditThresholds)

    @property
    def seed_labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.seeds)

    @property
    def agreement(self) -> float:
        """Fraction of seeds whose label is the pair's most common seed label."""
        return Counter(self.seed_labels).most_common(1)[0][1] / len(self.seeds)

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "reason": self.reason,
            "seed_labels": list(self.seed_labels),
            "agreement": self.agreement,
            "seeds": [s.to_json() for s in self.seeds],
            "summary": self.summary,
            "thresholds": to_dict(self.thresholds),
        }


def _summary(seeds: tuple[SeedVerdict, ...], confidence: float) -> dict[str, dict]:
    """Per test any seed ran: the mean statistic over seeds that have one (None where no seed has a number,
    e.g. no seed revived), its t-interval, and each seed's value and outcome."""
    out: dict[str, dict] = {}
    for test in ("behaviour", *TESTS):
        results = [
            next(
                (r for r in ((s.behaviour,) if test == "behaviour" else s.tests) if r and r.test == test),
                None,
            )
            for s in seeds
        ]
        if all(r is None for r in results):
            continue
        values = [r.value for r in results if r is not None and r.value is not None]
        interval = t_interval(values, confidence=confidence) if values else None
        out[test] = {
            "mean": sum(values) / len(values) if values else None,
            "t_interval": None if interval is None else list(interval),
            "per_seed": [None if r is None else r.value for r in results],
            "outcomes": [None if r is None else r.outcome for r in results],
            "threshold": next(r.threshold for r in results if r is not None),
        }
    return out


def audit(
    evidence: AuditEvidence | list[AuditEvidence], thresholds: AuditThresholds | None = None
) -> Verdict:
    """Label one capability of one model pair from the evidence of one or several seeds."""
    t = thresholds or AuditThresholds()
    items = [evidence] if isinstance(evidence, AuditEvidence) else list(evidence)
    if not items:
        raise ConfigError("audit needs at least one AuditEvidence")
    seeds = tuple(seed_verdict(e, t) for e in items)
    top, count = Counter(s.label for s in seeds).most_common(1)[0]
    label: Label = top if count * 2 > len(seeds) else "inconclusive"
    reason = (
        f"{count} of {len(seeds)} seed(s) say {top}"
        if label == top
        else f"no label has a strict majority of seeds ({', '.join(s.label for s in seeds)})"
    )
    return Verdict(label, reason, seeds, _summary(seeds, t.confidence), t)
