"""Measure ``AuditEvidence`` for one capability of one (base, fine-tuned) model pair, with this package.

``collect_evidence`` evaluates both models on the capability, probes the residual stream of the base, the
fine-tuned model and a never-had-it reference on the same data, prunes the fine-tuned model (units scored on
the training pool, ranked by score and by score x how far fine-tuning moved them; ranking and K chosen on one
half of the evaluation set and reported on the other, beside random units),
patches each component of the base into the fine-tuned model, and relearns the capability from the fine-tuned
model and from the reference with one recipe (``interp.relearning``). Models are any TransformerLens models of
one architecture and vocabulary (ftmech checkpoints or Hugging Face models booted by ``interp.hub_models``).
"""

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch

from interp import hooks
from interp.ablation import ablation_scores
from interp.audit import AuditEvidence, AuditThresholds, behaviour_test
from interp.capability import Capability
from interp.errors import ConfigError
from interp.evaluation import evaluate
from interp.neuron_change import change_weighted, neuron_change
from interp.patching import check_pair, patch_across_models
from interp.probing import ProbeConfig, probe_layers
from interp.pruning import Level, UnitScores, pruning_curve, random_scores, saliency_scores
from interp.relearning import RelearnConfig, reinitialised, relearn

PRUNE_KS = (0, 1, 2, 3, 5, 8, 12, 15)
REINIT_KIND = "re-initialised copy (a weaker control than a model that learned related data)"


@dataclass(frozen=True, kw_only=True)
class EvidenceConfig:
    """How the evidence is measured: probe recipe, pruning Ks and level, the relearning recipe."""

    probe: ProbeConfig | None = ProbeConfig(backend="sklearn", max_iter=500)  # None: no probes
    prune_ks: tuple[int, ...] = PRUNE_KS
    prune_level: Level = "neuron"
    prune_method: Literal["ablation", "saliency"] = "ablation"  # exact single-neuron ablation, or the study's
    # first-order saliency (which large-weight circuits defeat; see interp.ablation)
    prune_examples: int = 64  # training examples ablation scores average over (one forward per neuron each)
    relearn: RelearnConfig | None = RelearnConfig()  # None: revival is not measured
    patch: bool = True
    skip_if_intact: bool = False  # no internal tests where the audit's behaviour check already says intact

    def __post_init__(self) -> None:
        if self.prune_method not in ("ablation", "saliency"):
            raise ConfigError(f"prune_method must be ablation or saliency, got {self.prune_method!r}")
        if not any(k > 0 for k in self.prune_ks) or any(k < 0 for k in self.prune_ks):
            raise ConfigError(f"prune_ks must be >= 0 with at least one K > 0, got {self.prune_ks}")
        if self.prune_examples < 1:
            raise ConfigError(f"prune_examples must be >= 1, got {self.prune_examples}")
        if self.prune_method == "ablation" and self.prune_level != "neuron":
            raise ConfigError(
                "ablation scores rank MLP neurons; use prune_level 'neuron' or prune_method 'saliency'"
            )


def _best_probe(
    model: torch.nn.Module, capability: Capability, config: ProbeConfig
) -> tuple[float, float, int]:
    """(best-layer held-out accuracy, its majority floor, held-out examples) of the capability's probe label."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = probe_layers(
            model,
            capability.eval_set.batch,
            hook_names=hooks.residual_stream(model.cfg.n_layers),
            label=capability.probe_label,
            position="answer",
            config=config,
            control=False,
        )
    top = result.task[result.best()[0]]
    return top.test_accuracy, top.majority_floor, top.n_test


def _probes(base, finetuned, reference, capability: Capability, config: ProbeConfig) -> dict[str, Any]:
    """Best-layer probe accuracy of the capability's label in the base, fine-tuned and reference models."""
    probe_pt, floor, n_test = _best_probe(base, capability, config)
    return {
        "probe_pt": probe_pt,
        "probe_floor": floor,
        "n_probe": n_test,
        "probe_ft": _best_probe(finetuned, capability, config)[0],
        "probe_reference": _best_probe(reference, capability, config)[0],
    }


def evidence_ranking(
    finetuned: torch.nn.Module, capability: Capability, config: EvidenceConfig
) -> UnitScores:
    """The fine-tuned model's units ranked by the config's method on the capability's training pool: the
    ranking the evidence prunes by, which a caller may compute first to draw its own curves with it."""
    if config.prune_method == "ablation":
        return ablation_scores(finetuned, capability.train, max_examples=config.prune_examples)
    return saliency_scores(finetuned, capability.train, level=config.prune_level)


def _rankings(
    base, finetuned, capability: Capability, config: EvidenceConfig, ranking: UnitScores | None
) -> list[UnitScores]:
    """The unit rankings pruning tries: the method's own and, at neuron level, the same weighted by change."""
    if ranking is None:
        ranking = evidence_ranking(finetuned, capability, config)
    elif (ranking.method, ranking.level) != (config.prune_method, config.prune_level):
        raise ConfigError(
            f"the ranking holds {ranking.method} scores of {ranking.level} units; the evidence config asks for "
            f"{config.prune_method} at level {config.prune_level}"
        )
    if config.prune_level != "neuron":
        return [ranking]
    return [ranking, change_weighted(ranking, neuron_change(base, finetuned))]


def _pruning(
    base, finetuned, capability: Capability, config: EvidenceConfig, seed: int, ranking: UnitScores | None
) -> dict:
    """Pruning curves of each ranking on the selection half; the ranking whose best K > 0 does best there is
    kept and measured on the report half, beside random units."""
    select, report = capability.split_eval()
    ks = sorted(set(config.prune_ks))

    def curve(eval_set, scores: UnitScores):
        return pruning_curve(finetuned, None, [eval_set], ks=ks, scores=scores)

    rankings = {r.method: r for r in _rankings(base, finetuned, capability, config, ranking)}
    selected = {method: curve(select, scores).accuracy[select.name] for method, scores in rankings.items()}

    def best_selected(method: str) -> float:
        return max((a for k, a in zip(ks, selected[method], strict=True) if k > 0), default=0.0)

    chosen = max(selected, key=best_selected)
    kept = curve(report, rankings[chosen])
    randoms = curve(report, random_scores(finetuned, level=config.prune_level, seed=seed))
    curves = {method: {select.name: accuracy} for method, accuracy in selected.items()}
    curves[chosen][report.name] = kept.accuracy[report.name]
    return {
        "prune_ks": tuple(ks),
        "prune_ranking": chosen,
        "prune_select": selected[chosen],
        "prune_report": kept.accuracy[report.name],
        "prune_random": randoms.accuracy[report.name],
        "n_prune_report": len(report.batch),
        "_units": list(kept.units[: max(ks)]),
        "_curves": curves,
    }


def collect_evidence(
    base: torch.nn.Module,
    finetuned: torch.nn.Module,
    capability: Capability,
    *,
    reference: torch.nn.Module | None = None,
    config: EvidenceConfig | None = None,
    seed: int = 0,
    name: str | None = None,
    thresholds: AuditThresholds | None = None,
    ranking: UnitScores | None = None,
) -> tuple[AuditEvidence, dict[str, Any]]:
    """The evidence of one seed and the measurements behind it (relearning curves, pruned units, patching).

    ``reference`` is a model that never had the capability (e.g. trained on related data without it); without
    one, a re-initialised copy of the fine-tuned model stands in, and the evidence says so. ``thresholds``
    (the audit's) decide ``skip_if_intact``. ``ranking``: ``evidence_ranking(finetuned, capability,
    config)`` when the caller has computed it already (it is not scored twice).
    """
    config = config or EvidenceConfig()
    thresholds = thresholds or AuditThresholds()
    check_pair(base, finetuned)
    capability.check_vocab(base.cfg.d_vocab)
    if reference is not None:
        check_pair(base, reference)
    random_model = reinitialised(finetuned, seed=10_000 + seed)
    reference_kind = "never-had-it model" if reference is not None else REINIT_KIND
    reference = reference if reference is not None else random_model
    pt = evaluate(base, capability.eval_set)
    ft = evaluate(finetuned, capability.eval_set)
    floor = max(capability.chance_floor, evaluate(random_model, capability.eval_set).accuracy)
    fields: dict[str, Any] = {
        "pt_accuracy": pt.accuracy,
        "ft_accuracy": ft.accuracy,
        "accuracy_floor": floor,
        "n_eval": pt.n,
        "seed": seed,
        "name": name,
    }
    details: dict[str, Any] = {"reference_kind": reference_kind, "capability": capability.name}
    if config.skip_if_intact and behaviour_test(AuditEvidence(**fields), thresholds).outcome == "pass":
        details["skipped"] = "the behaviour is intact, so the audit reads no internal test"
        return AuditEvidence(**fields), details
    if capability.probe_label is not None and config.probe is not None:
        fields |= _probes(base, finetuned, reference, capability, config.probe)
    pruning = _pruning(base, finetuned, capability, config, seed, ranking)
    details["pruned_units"] = pruning.pop("_units")
    details["pruning_curves"] = pruning.pop("_curves")
    fields |= pruning
    if config.patch:
        details["patching"] = patch_across_models(
            base, finetuned, capability.eval_set, hook_names=hooks.block_outputs(base.cfg.n_layers)
        ).restored()
        values = [v for v in details["patching"].values() if v is not None]
        fields["patch_restored"] = max(0.0, min(1.0, max(values))) if values else None
    if config.relearn is not None:
        revival, details["relearning"] = _revival(
            finetuned, reference, capability, config.relearn, pt.accuracy
        )
        fields |= revival | {"reference_kind": reference_kind}
    return AuditEvidence(**fields), details


def _revival(finetuned, reference, capability: Capability, recipe: RelearnConfig, pt_accuracy: float):
    """Steps to relearn the capability (to ``threshold_frac`` of the pretrained accuracy), fine-tuned model
    and reference by one recipe, and both curves."""
    threshold = recipe.threshold_frac * pt_accuracy
    ft_run = relearn(finetuned, capability, recipe, threshold=threshold, name="fine-tuned")
    ref_run = relearn(reference, capability, recipe, threshold=threshold, name="reference")
    fields = {
        "revival_steps": ft_run.curve.steps_to_threshold,
        "reference_revival_steps": ref_run.curve.steps_to_threshold,
        "revival_horizon": recipe.steps,
    }
    return fields, {"fine-tuned": ft_run.to_json(), "reference": ref_run.to_json()}
