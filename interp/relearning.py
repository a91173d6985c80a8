"""Relearning (reverse fine-tuning) measured by the audit itself.

A wrapped capability comes back in a few steps of training on it; a removed one comes back no faster than a
model that never had it learns it. ``relearn`` trains a copy of a model on a capability's training pool at each
learning rate of a small sweep and keeps the fastest curve; ``relearning_speedup`` compares a fine-tuned model
with a never-had-it reference trained by the identical recipe. A curve that never reaches the threshold within
the horizon is censored: evidence of no fast revival, never missing data.
"""

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from interp.capability import Capability
from interp.errors import ConfigError
from interp.models import copy_model
from interp.revival import RevivalCurve, log_spaced_steps, revival_curve
from interp.runtime import torch_generator
from interp.training import TrainConfig, train


@dataclass(frozen=True, kw_only=True)
class RelearnConfig:
    """The relearning recipe: AdamW (or SGD with momentum) at a constant LR without weight decay (which would
    shrink weights that carry the capability, e.g. a compiled circuit's thresholds), answer-token loss, for each
    LR of a small sweep. Adam's per-weight normalised steps wreck a compiled circuit in one step; use SGD there."""

    optimizer: Literal["adamw", "sgd"] = "adamw"  # SGD with momentum 0.9 suits compiled (Tracr) weights
    steps: int = 100  # the horizon: a curve that has not reached the threshold by then is censored
    lrs: tuple[float, ...] = (3e-4, 1e-3)  # the sweep; each model keeps its fastest LR
    batch_size: int = 32
    threshold_frac: float = 0.9  # revived at this fraction of the pretrained model's accuracy
    n_evals: int = 10  # log-spaced evaluation steps
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.n_evals < 2:
            raise ConfigError("relearning steps and batch_size must be >= 1 and n_evals >= 2")
        if not self.lrs or any(not 0 < lr < 1 for lr in self.lrs):
            raise ConfigError(f"relearning lrs must be a non-empty list of values in (0, 1), got {self.lrs}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"relearning optimizer must be adamw or sgd, got {self.optimizer!r}")
        if not 0 < self.threshold_frac <= 1:
            raise ConfigError(f"threshold_frac must be in (0, 1], got {self.threshold_frac}")

    def train_config(self, lr: float, device: torch.device | str) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=lr,
            schedule="constant",
            warmup_frac=0.0,
            optimizer=self.optimizer,
            weight_decay=0.0,
            eval_steps=log_spaced_steps(self.steps, self.n_evals),
            seed=self.seed,
            device=str(device),
        )


@dataclass(frozen=True)
class Relearning:
    """The fastest relearning curve of one model over the LR sweep, and what it saw."""

    curve: RevivalCurve
    lr: float
    examples_seen: int  # training examples drawn (with replacement) per LR
    pool_size: int  # distinct examples in the training pool

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "curve": self.curve.to_json()}


def _fastest(curves: list[tuple[float, RevivalCurve]]) -> tuple[float, RevivalCurve]:
    """Fewest steps to threshold (a censored curve counts as never), then the largest log-step AUC."""
    return min(
        curves,
        key=lambda c: (c[1].steps_to_threshold is None, c[1].steps_to_threshold or 0, -c[1].auc),
    )


def relearn(
    model: torch.nn.Module, capability: Capability, config: RelearnConfig, *, threshold: float, name: str
) -> Relearning:
    """Train a copy of ``model`` on ``capability.train`` at each LR of the sweep; ``model`` is unchanged.

    Accuracy is measured on the capability's evaluation set, which relearning never trains on.
    """
    device = next(model.parameters()).device
    curves = []
    for lr in config.lrs:
        learner = copy_model(model)
        result = train(
            learner,
            capability.train_batches(config.batch_size, config.seed),
            config.train_config(lr, device),
            eval_sets=[capability.eval_set],
            progress=False,
        )
        steps, values = result.curve(capability.eval_set.name)
        curves.append((lr, revival_curve(name, steps, values, threshold=threshold, horizon=config.steps)))
        del learner
    lr, curve = _fastest(curves)
    return Relearning(
        curve=curve, lr=lr, examples_seen=config.steps * config.batch_size, pool_size=len(capability.train)
    )


def reinitialised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``model`` with fresh weights: N(0, 0.02) matrices and embeddings, zero biases, unit norm
    gains. The never-had-it reference when the user gives none: a weaker control than a model trained on
    related data, and labelled as such."""
    fresh = copy_model(model)
    gen = torch_generator(seed)
    with torch.no_grad():
        for name, param in fresh.named_parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
            elif "ln" in name or "norm" in name:
                param.fill_(1.0)
            else:
                param.zero_()
    return fresh
