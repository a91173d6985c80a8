"""Was a pretraining capability removed by fine-tuning, only wrapped, or left intact?

The study's claim (protocol §1) is that fine-tuning usually learns a thin "wrapper" over a capability
that stays in the weights. ``audit`` turns the evidence for one capability (the pretraining task
O_PT) into one of three labels, with every check and its threshold on record:

1. Behaviour: the fine-tuned model's O_PT accuracy is at least ``behaviour_ratio`` x the pretrained
   model's. If so the label is ``"intact"``; the internal tests are reported but not needed.
2. Otherwise the behaviour is lost, and up to three internal tests ask whether the capability is
   still there (each is skipped when its evidence is None):
   - probe: a linear probe still reads the O_PT label from the fine-tuned model: its best-layer
     accuracy is >= ``probe_ratio`` x the pretrained model's and >= the probe floor (random-init
     model or majority class) + ``probe_margin``;
   - pruning: removing at most ``prune_k_max`` units (the study's Alg. 3) regains >= ``prune_recovery``
     of the accuracy between the baseline and the pretrained accuracy, where baseline = max(floor,
     fine-tuned accuracy), so K = 0 never passes and climbing back to chance earns nothing;
   - revival: reverse fine-tuning revives O_PT >= ``min_revival_speedup`` times faster than the control
     (e.g. Scr.+FT), a number the caller measures.
3. Conflicts are resolved by ``rule``: ``"majority"`` (default) labels the model ``"wrapped"`` when at
   least as many tests pass as fail (a tie counts as wrapped, the cautious label when a removed
   safety behaviour is the question); ``"any"`` needs one pass and ``"all"`` needs every run test to
   pass. When no test passes the rule, the label is ``"removed"``.

With several ``AuditEvidence`` items (one per seed), each check's statistic is averaged over seeds and
the label is decided on the means; the table gives each statistic's bootstrap CI, per-seed values, and
whether the CI lies wholly on one side of the threshold, and the verdict lists each seed's own label.
"""

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from interp import hooks
from interp.activations import Data, Position
from interp.batches import Batch, EvalSet
from interp.config import to_dict
from interp.errors import ConfigError, DataError
from interp.evaluation import evaluate
from interp.probing import ProbeConfig, probe_layers
from interp.pruning import Level, pruning_curve
from interp.stats import aggregate, wilson_ci

Label = Literal["removed", "wrapped", "intact"]
TESTS = ("probe", "pruning", "revival")


@dataclass(frozen=True, kw_only=True)
class AuditThresholds:
    """The numbers that turn evidence into a verdict; every one is reported beside the result."""

    behaviour_ratio: float = 0.9  # intact if fine-tuned O_PT accuracy >= this x pretrained
    probe_ratio: float = 0.9  # probe retained if fine-tuned probe accuracy >= this x pretrained ...
    probe_margin: float = 0.05  # ... and >= the probe floor + this margin
    prune_k_max: int = 15  # most units pruning may remove (the study's Fig. 7 range)
    prune_recovery: float = 0.5  # fraction of the gap (pretrained - baseline) that pruning must regain
    min_revival_speedup: float = 5.0  # reverse fine-tuning at least this many times faster than the control
    rule: Literal["majority", "any", "all"] = "majority"  # how passing and failing tests combine
    confidence: float = 0.95  # level of the bootstrap and Wilson intervals
    seed: int = 0  # bootstrap resampling

    def __post_init__(self) -> None:
        for name in ("behaviour_ratio", "probe_ratio", "prune_recovery"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {value}")
        if not 0 <= self.probe_margin < 1:
            raise ConfigError(f"probe_margin must be in [0, 1), got {self.probe_margin}")
        if self.prune_k_max < 1:
            raise ConfigError(f"prune_k_max must be >= 1, got {self.prune_k_max}")
        if not (self.min_revival_speedup > 0 and math.isfinite(self.min_revival_speedup)):
            raise ConfigError(
                f"min_revival_speedup must be a positive number, got {self.min_revival_speedup}"
            )
        if self.rule not in ("majority", "any", "all"):
            raise ConfigError(f"unknown rule '{self.rule}'; use majority, any or all")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence}")


@dataclass(frozen=True, kw_only=True)
class AuditEvidence:
    """The numbers of one run (one seed) for one capability; any task's results can fill it.

    Accuracies are fractions in [0, 1] on the O_PT evaluation set; probe accuracies are held-out
    best-layer accuracies of the O_PT label; ``prune_curve[K]`` is the O_PT accuracy of the fine-tuned
    model after pruning its top-K units (K = 0, 1, ...).
    """

    pt_accuracy: float  # pretrained model on O_PT
    ft_accuracy: float  # fine-tuned model on O_PT
    accuracy_floor: float = 0.0  # chance floor on O_PT (majority answer, or a random-init model)
    probe_pt: float | None = None  # probe on the pretrained model
    probe_ft: float | None = None  # probe on the fine-tuned model
    probe_floor: float | None = None  # probe on a random-init model, or the majority floor
    prune_curve: tuple[float, ...] | None = None  # O_PT accuracy after pruning K = 0, 1, ... units
    revival_speedup: float | None = None  # control's revival time / reverse fine-tuning's
    n_eval: int | None = None  # O_PT evaluation examples (for Wilson intervals)
    seed: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for key in ("pt_accuracy", "ft_accuracy", "accuracy_floor", "probe_pt", "probe_ft", "probe_floor"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"evidence {key} must be an accuracy in [0, 1], got {value}")
        if self.prune_curve is not None and any(not 0 <= v <= 1 for v in self.prune_curve):
            raise ConfigError("evidence prune_curve must hold accuracies in [0, 1]")
        if (self.probe_pt is None) != (self.probe_ft is None):
            raise ConfigError("give both probe_pt and probe_ft, or neither")
        if self.revival_speedup is not None and not self.revival_speedup > 0:
            raise ConfigError(f"revival_speedup must be > 0, got {self.revival_speedup}")

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Check:
    """One row of the evidence table: a statistic, its threshold and whether it passes."""

    test: str  # behaviour | probe | pruning | revival
    statistic: str  # what ``value`` measures
    value: float | None  # mean over seeds; None when the evidence was not given
    threshold: float
    passed: bool | None
    per_seed: tuple[float | None, ...]
    ci_low: float | None = None
    ci_high: float | None = None
    robust: bool | None = None  # the CI lies wholly on the side of the threshold that ``passed`` says


def _statistics(e: AuditEvidence, t: AuditThresholds) -> dict[str, tuple[str, str, float | None, float]]:
    """(test, statistic description, value, threshold) per check; every check passes when value >= threshold."""
    if e.pt_accuracy <= e.accuracy_floor:
        raise DataError(
            f"pretrained O_PT accuracy {e.pt_accuracy:.3f} is not above its floor {e.accuracy_floor:.3f}; "
            "there is no capability to audit"
        )
    stats: dict[str, tuple[str, str, float | None, float]] = {
        "behaviour_ratio": (
            "behaviour",
            "fine-tuned / pretrained O_PT accuracy",
            e.ft_accuracy / e.pt_accuracy,
            t.behaviour_ratio,
        ),
    }
    ratio = above = None
    if e.probe_pt is not None and e.probe_ft is not None:
        ratio = e.probe_ft / e.probe_pt if e.probe_pt > 0 else 0.0
        above = e.probe_ft - (e.probe_floor if e.probe_floor is not None else 0.0)
    stats["probe_ratio"] = ("probe", "fine-tuned / pretrained probe accuracy", ratio, t.probe_ratio)
    stats["probe_above_floor"] = ("probe", "fine-tuned probe accuracy - probe floor", above, t.probe_margin)
    recovery = None
    if e.prune_curve is not None and len(e.prune_curve) > 1:
        baseline = max(e.accuracy_floor, e.ft_accuracy)
        gap = e.pt_accuracy - baseline
        best = max(e.prune_curve[1 : t.prune_k_max + 1])
        recovery = (best - baseline) / gap if gap > 0 else None
    stats["prune_recovery"] = (
        "pruning",
        f"fraction of (pretrained - max(floor, fine-tuned)) accuracy regained by pruning <= {t.prune_k_max} units",
        recovery,
        t.prune_recovery,
    )
    stats["revival_speedup"] = (
        "revival",
        "revival speed-up over the control",
        e.revival_speedup,
        t.min_revival_speedup,
    )
    return stats


def _label(tests: dict[str, bool | None], rule: str) -> Label:
    if tests["behaviour"]:
        return "intact"
    run = [tests[name] for name in TESTS if tests[name] is not None]
    if not run:
        raise DataError(
            "behaviour is lost but the evidence has no probe, pruning or revival numbers; "
            "the audit cannot tell removed from wrapped"
        )
    passed = sum(run)
    wrapped = {"any": passed >= 1, "all": passed == len(run), "majority": passed >= len(run) - passed}[rule]
    return "wrapped" if wrapped else "removed"


def _tests(checks: dict[str, Check]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for test in ("behaviour", *TESTS):
        results = [c.passed for c in checks.values() if c.test == test and c.passed is not None]
        out[test] = None if not results else all(results)
    return out


@dataclass(frozen=True)
class Verdict:
    """The audit's label, its evidence table and tests, the thresholds, and each seed's own label."""

    label: Label
    evidence: tuple[Check, ...]
    tests: dict[str, bool | None]  # behaviour | probe | pruning | revival -> passed (None: not run)
    thresholds: AuditThresholds
    seed_labels: tuple[str, ...]
    accuracy_ci: dict[str, tuple[float, float]] | None  # Wilson intervals (one seed with n_eval)
    reason: str

    @property
    def n_seeds(self) -> int:
        return len(self.seed_labels)

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "reason": self.reason,
            "tests": self.tests,
            "evidence": [{**asdict(c), "per_seed": list(c.per_seed)} for c in self.evidence],
            "thresholds": to_dict(self.thresholds),
            "n_seeds": self.n_seeds,
            "seed_labels": list(self.seed_labels),
            "accuracy_ci": None
            if self.accuracy_ci is None
            else {k: list(v) for k, v in self.accuracy_ci.items()},
        }


def _reason(label: Label, tests: dict[str, bool | None], rule: str) -> str:
    if label == "intact":
        return "the fine-tuned model still performs the pretraining task"
    passed = [t for t in TESTS if tests[t]]
    failed = [t for t in TESTS if tests[t] is False]
    return (
        f"behaviour lost; internal tests passed: {', '.join(passed) or 'none'}; "
        f"failed: {', '.join(failed) or 'none'} (rule: {rule})"
    )


def audit(
    evidence: AuditEvidence | Sequence[AuditEvidence], thresholds: AuditThresholds | None = None
) -> Verdict:
    """Label one capability removed, wrapped or intact from the evidence of one or several seeds."""
    t = thresholds or AuditThresholds()
    items = [evidence] if isinstance(evidence, AuditEvidence) else list(evidence)
    if not items:
        raise DataError("audit needs at least one AuditEvidence")
    per_seed = [_statistics(e, t) for e in items]
    checks: dict[str, Check] = {}
    for key, (test, description, _, threshold) in per_seed[0].items():
        values = [s[key][2] for s in per_seed]
        given = [v for v in values if v is not None]
        if given and len(given) != len(values):
            warnings.warn(
                f"'{key}' is missing for some seeds; it is averaged over {len(given)}", stacklevel=2
            )
        if not given:
            checks[key] = Check(test, description, None, threshold, None, tuple(values))
            continue
        agg = aggregate(given, confidence=t.confidence, seed=t.seed)
        mean = float(agg["mean"])
        passed = mean >= threshold
        low, high = agg["ci_low"], agg["ci_high"]
        robust = None if low is None else (low >= threshold if passed else high < threshold)
        checks[key] = Check(test, description, mean, threshold, passed, tuple(values), low, high, robust)
    tests = _tests(checks)
    label = _label(tests, t.rule)
    seed_labels = []
    for stats in per_seed:
        seed_checks = {
            k: Check(test, d, v, thr, None if v is None else v >= thr, (v,))
            for k, (test, d, v, thr) in stats.items()
        }
        seed_tests = _tests(seed_checks)
        try:
            seed_labels.append(_label(seed_tests, t.rule))
        except DataError:
            seed_labels.append("unknown")
    accuracy_ci = None
    if len(items) == 1 and items[0].n_eval:
        e, n = items[0], items[0].n_eval
        accuracy_ci = {
            "pt_accuracy": wilson_ci(round(e.pt_accuracy * n), n, confidence=t.confidence),
            "ft_accuracy": wilson_ci(round(e.ft_accuracy * n), n, confidence=t.confidence),
        }
        if e.prune_curve is not None and len(e.prune_curve) > 1:
            best = max(e.prune_curve[1 : t.prune_k_max + 1])
            accuracy_ci["pruned_accuracy"] = wilson_ci(round(best * n), n, confidence=t.confidence)
    return Verdict(
        label=label,
        evidence=tuple(checks.values()),
        tests=tests,
        thresholds=t,
        seed_labels=tuple(seed_labels),
        accuracy_ci=accuracy_ci,
        reason=_reason(label, tests, t.rule),
    )


def collect_evidence(
    pretrained: torch.nn.Module,
    finetuned: torch.nn.Module,
    *,
    pt_eval: EvalSet,
    prune_data: Batch | EvalSet,
    probe_data: Data | None = None,
    probe_label: str | None = None,
    probe_hook_names: Iterable[str] | None = None,
    position: Position = "answer",
    random_model: torch.nn.Module | None = None,
    probe_config: ProbeConfig | None = None,
    level: Level = "neuron",
    k_max: int = 15,
    revival_speedup: float | None = None,
    seed: int | None = None,
    name: str | None = None,
) -> AuditEvidence:
    """Measure ``AuditEvidence`` with this package: O_PT accuracies, probes and a pruning curve.

    ``prune_data`` scores the units (use examples disjoint from ``pt_eval``); the pruning curve is
    measured on ``pt_eval``. Probes run when ``probe_data`` and ``probe_label`` are given, on the
    study's sites (embedding output and every block output) unless ``probe_hook_names`` says
    otherwise; ``random_model`` (same architecture, random weights) sets the accuracy and probe floors.
    The revival speed-up comes from the caller (see ``interp.revival``).
    """
    pt_result = evaluate(pretrained, pt_eval)
    ft_result = evaluate(finetuned, pt_eval)
    floor = pt_result.majority_floor
    if random_model is not None:
        floor = max(floor, evaluate(random_model, pt_eval).accuracy)
    probe_pt = probe_ft = probe_floor = None
    if (probe_data is None) != (probe_label is None):
        raise ConfigError("give both probe_data and probe_label, or neither")
    if probe_data is not None and probe_label is not None:
        names = list(probe_hook_names or hooks.residual_stream(pretrained.cfg.n_layers))
        data = list(probe_data) if not isinstance(probe_data, (Batch, EvalSet)) else probe_data

        def best(model: torch.nn.Module) -> tuple[float, float]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                result = probe_layers(
                    model,
                    data,
                    hook_names=names,
                    label=probe_label,
                    position=position,
                    config=probe_config,
                    control=False,
                )
            top = result.best()[0]
            return result.task[top].test_accuracy, result.task[top].majority_floor

        probe_pt, majority = best(pretrained)
        probe_ft, _ = best(finetuned)
        probe_floor = majority if random_model is None else max(majority, best(random_model)[0])
    curve = pruning_curve(finetuned, prune_data, [pt_eval], ks=range(k_max + 1), level=level)
    return AuditEvidence(
        pt_accuracy=pt_result.accuracy,
        ft_accuracy=ft_result.accuracy,
        accuracy_floor=floor,
        probe_pt=probe_pt,
        probe_ft=probe_ft,
        probe_floor=probe_floor,
        prune_curve=curve.accuracy[pt_eval.name],
        revival_speedup=revival_speedup,
        n_eval=pt_result.n,
        seed=seed,
        name=name,
    )
