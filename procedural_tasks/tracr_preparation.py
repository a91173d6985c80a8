"""The compiled weights made ready for fine-tuning (paper App. C.1): Gaussian noise on every weight, after
a function-preserving rebalancing of the ReLU neurons.

Two deviations from the paper, both measured (the study's ``noise_sweep``; figures below on the shipped
weights, count-a accuracy at C_Te = 0 over 500 inputs, seeds 0-2) and recorded in every run's config:

- *MLP balancing (ours).* Our Counter is compiled exact up to 45 letters (tracr's mlp_exactness L = 8648;
  the paper most likely used tracr's default 100). Its 681 nonzero weights (of 186,945) run from 1 (median)
  to 8648, and its SelectorWidth MLP (block 1) has hidden activations up to ~8,460 on 45-letter inputs, so
  N(0, 1e-5) noise already collapses it to a nearly constant answer (67-100% of inputs get one answer;
  3-23% correct). ``balance_mlp_neurons`` rescales each ReLU neuron, relu(x/c) * c = relu(x) for c > 0, so its
  input and output weights have equal norms: the function is unchanged (tested), the largest weight drops
  from 8648 to about 111 (median nonzero 9.6) and the largest activation to ~108.
- *Noise std (ours 1e-4; the paper's N(0, 0.001), read as a std).* Balanced, std 1e-5 and 1e-4 keep both
  programs at 100% (1e-4 is 1e-5 of the Counter's median nonzero weight); 3e-4 leaves Counter at 28-40%
  (20 letters) or 3-85% (45 letters) and Max-identifier at 86-97%; 1e-3 leaves Counter at 0-10% (20 letters)
  or 0-21% (45) and Max-identifier at 16-38%. Hence ``STUDY_NOISE_STD`` = 1e-4, the largest std tried that
  keeps both at 100%. Max-identifier needs no balancing at these stds (its largest weight is 528, 100%
  under 1e-4 either way).
"""

import copy
import math

import torch

from interp import weights
from interp.errors import ConfigError
from interp.runtime import torch_generator
from procedural_tasks.tracr_circuit import swap_operand
from procedural_tasks.tracr_models import CompiledProgramInfo, load_compiled

STUDY_NOISE_STD = 1e-4  # the largest std tried that keeps both balanced programs at 100% (paper: 1e-3)


def balance_mlp_neurons(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose ReLU neurons have equal input (weights and bias) and output norms; same function.

    relu(c x) = c relu(x) for c > 0, so dividing a neuron's input weights and bias by c and multiplying
    its output weights by c leaves every output unchanged. Dead neurons (a zero side) are left alone.
    """
    if model.cfg.act_fn != "relu":
        raise ConfigError(f"balancing needs ReLU MLPs; the model uses {model.cfg.act_fn!r}")
    balanced = copy.deepcopy(model)
    state = balanced.state_dict()
    with torch.no_grad():
        for layer in range(balanced.cfg.n_layers):
            w_in = state[weights.mlp(layer, "in")]
            b_in = state[weights.mlp(layer, "in", "bias")]
            w_out = state[weights.mlp(layer, "out")]
            norm_in = torch.sqrt(w_in.double().pow(2).sum(1) + b_in.double().pow(2))
            norm_out = w_out.double().norm(dim=0)
            alive = (norm_in > 0) & (norm_out > 0)
            scale = torch.where(
                alive, torch.sqrt(norm_in / norm_out.clamp_min(1e-300)), torch.ones_like(norm_in)
            )
            w_in.div_(scale[:, None].to(w_in.dtype))
            b_in.div_(scale.to(b_in.dtype))
            w_out.mul_(scale[None, :].to(w_out.dtype))
    return balanced


def add_weight_noise(model: torch.nn.Module, *, std: float, seed: int) -> torch.nn.Module:
    """A copy with i.i.d. N(0, std^2) added to every parameter (App. C.1's densifying noise), seeded."""
    if not (std >= 0 and math.isfinite(std)):
        raise ConfigError(f"noise std must be a finite number >= 0, got {std}")
    noisy = copy.deepcopy(model)
    gen = torch_generator(seed)
    with torch.no_grad():
        for _, param in sorted(noisy.state_dict(keep_vars=True).items()):
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float64) * std
            param.add_(noise.to(param.dtype))
    return noisy


def prepared_model(
    program: str,
    *,
    noise_std: float,
    seed: int,
    balance: bool = True,
    operand: str | int | None = None,
) -> tuple[torch.nn.Module, CompiledProgramInfo]:
    """The compiled program (or its ``swap_operand`` edit for ``operand``), balanced and noised."""
    model, info = load_compiled(program)
    if operand is not None and operand != info.config.operand_pt:
        model = swap_operand(model, info, operand)
    if balance:
        model = balance_mlp_neurons(model)
    return add_weight_noise(model, std=noise_std, seed=seed), info
