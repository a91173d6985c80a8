"""Neuron change localises what fine-tuning moved; change weighting keeps unchanged units out of a wrapper."""

import dataclasses

import pytest
import torch

from interp.audit_evidence import EvidenceConfig, collect_evidence, evidence_ranking
from interp.batches import EvalSet
from interp.capability import Capability
from interp.errors import ConfigError
from interp.models import build_model, copy_model
from interp.neuron_change import change_weighted, neuron_change
from interp.pruning import UnitScores, random_scores
from tests.conftest import tiny_model_config
from tests.unit.test_pruning import LAYER, NEURON, pretrained_and_planted


def test_only_the_planted_neuron_changed():
    base, finetuned, _ = pretrained_and_planted()
    change = neuron_change(base, finetuned)
    d_mlp = base.cfg.d_mlp
    assert change.shape == (base.cfg.n_layers * d_mlp,)
    assert change.argmax() == LAYER * d_mlp + NEURON and (change > 0).sum() == 1
    assert torch.equal(neuron_change(base, copy_model(base)), torch.zeros_like(change))


def test_change_weighting_drops_unchanged_and_unhelpful_units():
    model = build_model(tiny_model_config())
    scores = random_scores(model, seed=0)
    scores = UnitScores("neuron", "ablation", scores.groups, torch.linspace(-1, 1, len(scores)), True)
    change = torch.zeros(len(scores))
    change[[0, 3, len(scores) - 1]] = torch.tensor([5.0, 1.0, 2.0])
    weighted = change_weighted(scores, change)
    assert weighted.method == "ablation x change"
    assert weighted.order(1).item() == len(scores) - 1  # helps most and changed
    assert weighted.scores[0] == 0 and weighted.scores[3] == 0  # changed but unhelpful when removed
    with pytest.raises(ConfigError, match="neuron changes"):
        change_weighted(scores, change[:-1])
    magnitude_like = UnitScores("neuron", "magnitude", scores.groups, scores.scores, False)
    with pytest.raises(ConfigError, match="prune the highest"):
        change_weighted(magnitude_like, change)


def test_models_with_different_mlps_are_refused():
    small = build_model(tiny_model_config())
    wide = build_model(tiny_model_config(d_mlp=2 * small.cfg.d_mlp))
    with pytest.raises(ConfigError, match="differ in the MLP"):
        neuron_change(small, wide)


def test_an_intact_pair_skips_the_internal_tests_only_when_asked():
    base, _, batch = pretrained_and_planted()
    cap = Capability(name="c", eval_set=EvalSet("e", batch.slice(0, 80)), train=batch.slice(80, 160))
    config = EvidenceConfig(probe=None, relearn=None, patch=False, prune_ks=(0, 1))
    skip = dataclasses.replace(config, skip_if_intact=True)
    skipped, details = collect_evidence(base, copy_model(base), cap, config=skip)
    assert skipped.prune_ks is None and "intact" in details["skipped"]
    full, details = collect_evidence(base, copy_model(base), cap, config=config)
    assert full.prune_ks == (0, 1) and full.prune_ranking in details["pruning_curves"]


def test_a_ranking_computed_first_gives_the_same_evidence_and_must_be_the_configs_kind():
    base, finetuned, batch = pretrained_and_planted()
    cap = Capability(name="c", eval_set=EvalSet("e", batch.slice(0, 80)), train=batch.slice(80, 160))
    config = EvidenceConfig(probe=None, relearn=None, patch=False, prune_ks=(0, 1, 2))
    ranking = evidence_ranking(finetuned, cap, config)
    alone, alone_details = collect_evidence(base, finetuned, cap, config=config)
    given, given_details = collect_evidence(base, finetuned, cap, config=config, ranking=ranking)
    assert given == alone and given_details["pruned_units"] == alone_details["pruned_units"]
    with pytest.raises(ConfigError, match="asks for"):
        collect_evidence(base, finetuned, cap, config=config, ranking=random_scores(finetuned, seed=0))
