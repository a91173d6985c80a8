"""Exact single-neuron ablation scores: the loss change of zeroing each MLP neuron, one at a time.

The study's saliency (``interp.pruning.saliency_scores``) is a first-order Taylor estimate of that change. It
fails where the loss is far from linear in a unit: saturated attention and very large weights, as in a
compiled Tracr circuit, whose units then swamp the ranking with estimates in the thousands while a wrapper
that truly decides the answer scores below one. Ablation measures the change itself, at the cost of one
forward pass per neuron (n_layers x d_mlp passes over the scoring data).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from interp import hooks
from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.evaluation import answer_logits
from interp.models import model_device
from interp.pruning import UnitScores
from interp.runtime import eval_mode


def _loss(model: torch.nn.Module, batch: Batch, fwd_hooks: list) -> float:
    logits = model.run_with_hooks(batch.tokens, fwd_hooks=fwd_hooks)
    answer = logits[torch.arange(len(batch), device=logits.device), batch.answer_pos]
    return float(F.cross_entropy(answer.float(), batch.answers))


def _zero_neuron(neuron: int):
    def hook(act: Tensor, hook) -> Tensor:  # noqa: ARG001
        act[..., neuron] = 0
        return act

    return hook


@torch.no_grad()
def ablation_scores(model: torch.nn.Module, data: Batch | EvalSet, *, max_examples: int = 256) -> UnitScores:
    """How much the answer loss on ``data`` falls when each MLP neuron alone is zeroed (highest pruned first)."""
    batch = data.batch if isinstance(data, EvalSet) else data
    if len(batch) == 0:
        raise DataError("ablation scoring needs a non-empty batch")
    batch.check_vocab(model.cfg.d_vocab)
    batch = batch.slice(0, min(len(batch), max_examples)).to(model_device(model))
    if getattr(model.cfg, "attn_only", False):
        raise ConfigError("the model has no MLP neurons (attention-only); ablation scores need them")
    with eval_mode(model):
        clean = float(F.cross_entropy(answer_logits(model, batch).float(), batch.answers))
        groups, parts = [], []
        for layer in range(model.cfg.n_layers):
            name = hooks.mlp_post(layer)
            scores = [clean - _loss(model, batch, [(name, _zero_neuron(n))]) for n in range(model.cfg.d_mlp)]
            groups.append((f"L{layer}.mlp", model.cfg.d_mlp, 1))
            parts.append(torch.tensor(scores))
    return UnitScores("neuron", "ablation", tuple(groups), torch.cat(parts), prune_highest=True)
