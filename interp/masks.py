"""A learned neuron mask: an extension of the study's one-shot pruning (``interp.pruning``).

A hard-concrete (L0, Louizos et al. 2018) or sigmoid gate on every MLP neuron is trained on the
pretraining-task loss plus a penalty on the expected number of removed neurons, so it removes few
units and only those whose removal helps.
"""

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from interp import hooks, weights
from interp.batches import Batch, EvalSet
from interp.config import to_dict
from interp.errors import ConfigError, DataError
from interp.evaluation import answer_logits
from interp.models import model_device
from interp.pruning import _as_batch, _n_layers_with_mlp, prune_units
from interp.runtime import eval_mode, torch_generator
from interp.weights import torch_layout, transposed_keys


@dataclass(frozen=True, kw_only=True)
class MaskConfig:
    """A learned gate per MLP neuron, trained on the pretraining-task loss plus a removal penalty."""

    kind: Literal["hard_concrete", "sigmoid"] = "hard_concrete"  # L0 gates (Louizos 2018) or plain sigmoid
    steps: int = 200  # Adam steps on the gate parameters
    lr: float = 0.05  # Adam learning rate
    penalty: float = 0.05  # loss (nats) a removed neuron must buy; larger: fewer removals
    init_open: float = 2.0  # initial gate logit (log alpha): gates start open but not saturated
    beta: float = 2 / 3  # hard-concrete temperature
    batch_size: int = 128  # examples per step, drawn from the data
    refine: bool = True  # afterwards, restore each removed neuron whose removal does not pay its penalty
    seed: int = 0  # minibatches and hard-concrete noise

    def __post_init__(self) -> None:
        if self.kind not in ("hard_concrete", "sigmoid"):
            raise ConfigError(f"unknown mask kind '{self.kind}'; use hard_concrete or sigmoid")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"mask {name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"mask lr must be a positive number, got {self.lr}")
        if self.penalty < 0:
            raise ConfigError(f"mask penalty must be >= 0, got {self.penalty}")
        if not 0 < self.beta <= 1:
            raise ConfigError(f"hard-concrete beta must be in (0, 1], got {self.beta}")


_GAMMA, _ZETA = -0.1, 1.1  # hard-concrete stretch interval (Louizos et al. 2018)


@dataclass(frozen=True)
class MaskResult:
    """Learned gates [layer, neuron] (deterministic, in [0, 1]) and the neurons they remove (gate < 0.5)."""

    gates: Float[Tensor, "layer neuron"]
    layers: tuple[int, ...]
    removed: tuple[str, ...]  # most-closed first
    history: tuple[float, ...]  # pretraining-task loss (without the penalty) per step
    config: MaskConfig

    def to_json(self) -> dict:
        return {
            "removed": list(self.removed),
            "n_removed": len(self.removed),
            "layers": list(self.layers),
            "loss_first": self.history[0],
            "loss_last": self.history[-1],
            "config": to_dict(self.config),
        }


def _gate_sample(log_alpha: Tensor, config: MaskConfig, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Stochastic gates for one step and the expected number of removed neurons."""
    if config.kind == "sigmoid":
        gates = torch.sigmoid(log_alpha)
        return gates, (1 - gates).sum()
    u = torch.rand(log_alpha.shape, generator=gen).clamp(1e-6, 1 - 1e-6).to(log_alpha.device)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / config.beta)
    gates = (s * (_ZETA - _GAMMA) + _GAMMA).clamp(0, 1)
    p_closed = torch.sigmoid(config.beta * math.log(-_GAMMA / _ZETA) - log_alpha)
    return gates, p_closed.sum()


def _gate_final(log_alpha: Tensor, config: MaskConfig) -> Tensor:
    if config.kind == "sigmoid":
        return torch.sigmoid(log_alpha)
    return (torch.sigmoid(log_alpha) * (_ZETA - _GAMMA) + _GAMMA).clamp(0, 1)


def learn_mask(
    model: torch.nn.Module, data: Batch | EvalSet, *, config: MaskConfig | None = None
) -> MaskResult:
    """Learn which MLP neurons to remove so the pretraining-task loss on ``data`` falls, removing few.

    Gates multiply ``hooks.mlp_post(l)`` through forward hooks; only the gate parameters get
    gradients, so the model is not changed. Apply the result with ``prune_units(model, result.removed)``.
    """
    config = config or MaskConfig()
    batch = _as_batch(data)
    batch.check_vocab(model.cfg.d_vocab)
    state = torch_layout(model.state_dict(), transposed_keys(model))
    layers = _n_layers_with_mlp(state, model.cfg.n_layers)
    if not layers:
        raise ConfigError("learn_mask needs MLP neurons; the model is attention-only")
    device = model_device(model)
    d_mlp = state[weights.mlp(layers[0], "out")].shape[1]
    log_alpha = torch.full((len(layers), d_mlp), config.init_open, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([log_alpha], lr=config.lr)
    gen = torch_generator(config.seed)
    current: dict[str, Tensor] = {}

    def make_hook(i: int):
        def hook(act: Tensor, hook) -> Tensor:  # noqa: ARG001
            return act * current["gates"][i]

        return hook

    fwd_hooks = [(hooks.mlp_post(layer), make_hook(i)) for i, layer in enumerate(layers)]
    history = []
    n = len(batch)
    with eval_mode(model):
        with model.hooks(fwd_hooks=fwd_hooks):
            for _ in range(config.steps):
                idx = torch.randint(0, n, (min(config.batch_size, n),), generator=gen)
                chunk = Batch(
                    tokens=batch.tokens[idx], answer_pos=batch.answer_pos[idx], answers=batch.answers[idx]
                )
                chunk = chunk.to(device)
                gates, expected_removed = _gate_sample(log_alpha, config, gen)
                current["gates"] = gates
                task_loss = F.cross_entropy(answer_logits(model, chunk).float(), chunk.answers)
                loss = task_loss + config.penalty * expected_removed
                (grad,) = torch.autograd.grad(loss, [log_alpha])
                optimizer.zero_grad(set_to_none=True)
                log_alpha.grad = grad
                optimizer.step()
                history.append(float(task_loss.detach()))
    if not np.isfinite(history[-1]):
        raise DataError("the mask's pretraining-task loss became non-finite; lower the mask lr")
    gates = _gate_final(log_alpha.detach(), config).cpu()
    closed = [
        (float(gates[i, j]), f"L{layer}.mlp.n{j}") for i, layer in enumerate(layers) for j in range(d_mlp)
    ]
    removed = [name for value, name in sorted(closed) if value < 0.5]
    if config.refine:
        removed = _refine(model, batch, removed, config.penalty)
    return MaskResult(
        gates=gates, layers=tuple(layers), removed=tuple(removed), history=tuple(history), config=config
    )


def _refine(model: torch.nn.Module, batch: Batch, removed: list[str], penalty: float) -> list[str]:
    """Greedy clean-up of a learned mask on the full data and the same objective (loss + penalty x count).

    Most-open removed neuron first, each is restored when that lowers the objective, so every neuron
    left removed lowers the pretraining-task loss by at least ``penalty`` given the others.
    """
    from interp.evaluation import predict

    kept = list(removed)
    _, best = predict(prune_units(model, kept), batch)
    for unit in reversed(removed):
        trial = [u for u in kept if u != unit]
        _, loss = predict(prune_units(model, trial), batch)
        if loss <= best + penalty:
            kept, best = trial, loss
    return kept
