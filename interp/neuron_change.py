"""How much fine-tuning changed each MLP neuron, and unit rankings weighted by that change.

A wrapper is something fine-tuning added. A unit whose removal brings the pretrained behaviour back but which
fine-tuning left as it was (a compiled operand detector whose ablation collapses the model onto the most
common answer, say) is not part of a wrapper. ``change_weighted`` ranks units by their score (ablation or
saliency) times how far fine-tuning moved their weights, as model-diffing tools localise a fine-tune.
"""

import torch
from jaxtyping import Float
from torch import Tensor

from interp import weights
from interp.errors import ConfigError
from interp.pruning import UnitScores
from interp.weights import torch_layout, transposed_keys


def _layout(model: torch.nn.Module) -> dict[str, Tensor]:
    return torch_layout(model.state_dict(), transposed_keys(model))


def neuron_change(base: torch.nn.Module, finetuned: torch.nn.Module) -> Float[Tensor, " neuron"]:
    """Per MLP neuron (layers in order): the norm of the change of its input row, input bias, gate row and
    output column from ``base`` to ``finetuned``."""
    old, new = _layout(base), _layout(finetuned)
    parts = []
    for layer in range(finetuned.cfg.n_layers):
        out_key = weights.mlp(layer, "out")
        if out_key not in new:
            continue
        if old.get(out_key) is None or old[out_key].shape != new[out_key].shape:
            raise ConfigError(f"base and fine-tuned models differ in the MLP of layer {layer}")
        squared = (new[out_key] - old[out_key]).float().pow(2).sum(0)
        for key in (weights.mlp(layer, "in"), weights.mlp(layer, "gate"), weights.mlp(layer, "in", "bias")):
            if key in new:
                delta = (new[key] - old[key]).float().pow(2)
                squared += delta if delta.ndim == 1 else delta.sum(1)
        parts.append(squared.sqrt())
    if not parts:
        raise ConfigError("the model has no MLP neurons (attention-only); neuron change needs them")
    return torch.cat(parts).detach().cpu()


def change_weighted(scores: UnitScores, change: Float[Tensor, " neuron"]) -> UnitScores:
    """``scores`` (highest pruned first, neuron level) times each neuron's change over the largest change;
    a unit that does not help when removed (score <= 0) or that fine-tuning did not move scores 0."""
    if scores.level != "neuron" or not scores.prune_highest:
        raise ConfigError("change weighting needs neuron-level scores that prune the highest first")
    if change.shape != scores.scores.shape:
        raise ConfigError(f"{change.numel()} neuron changes for {len(scores)} scored neurons")
    relative = change / change.max() if change.max() > 0 else torch.zeros_like(change)
    weighted = scores.scores.clamp_min(0) * relative
    return UnitScores("neuron", f"{scores.method} x change", scores.groups, weighted, prune_highest=True)
