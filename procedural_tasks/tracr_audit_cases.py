"""Model pairs on the compiled Counter whose audit answer is known by construction.

The compiled Counter computes count(a) in three blocks: block 0's MLP detects the operand, block 1's attention
head and MLP (SelectorWidth) write the count one-hot into ``count_3:k``, block 2's attention copies it to the
output variable ``counter_1:k`` that the unembedding reads. Block 2's MLP is empty. Each case returns (base,
fine-tuned) for one seed; the base is the compiled model with the study's weight noise.

- ``intact``: the base with independent noise of the same size; it still counts a.
- ``wrapped``: the circuit untouched, and a wrapper planted in block 2's empty MLP: one ReLU neuron per count k
  reads ``counter_1:k`` and moves the answer to k + 1, so the model answers count(a) + 1, the count-of-b answer
  under the fine-tuning correlation (q = 1). Removing the wrapper's neurons brings count(a) back.
- ``removed``: the operand detector (block 0's MLP) and the counting head (block 1's attention) re-randomised,
  then fine-tuned to count b; nothing that counts a is left.
- ``never_had_it``: the compiled architecture from a random initialisation, trained on counting b only.
"""

import torch

from interp.capability import Capability
from interp.config import lookup
from interp.models import copy_model
from interp.relearning import reinitialised
from interp.runtime import torch_generator
from interp.training import TrainConfig, train
from procedural_tasks.tracr_batches import training_batch_fn
from procedural_tasks.tracr_capability import program_capability
from procedural_tasks.tracr_circuit import operand_circuit
from procedural_tasks.tracr_models import CompiledProgramInfo
from procedural_tasks.tracr_preparation import STUDY_NOISE_STD, add_weight_noise, prepared_model

PROGRAM = "counter"
N_LETTERS = 12  # short inputs: counts 0..12, so the wrapper needs 13 neurons (within the audit's K <= 15)
WRAPPER_GAIN = 4.0


def counter_capability(info: CompiledProgramInfo, *, n_eval: int, seed: int) -> Capability:
    """Counting a on uncorrelated short inputs (``N_LETTERS``), with a disjoint training pool."""
    return program_capability(info, n_eval=n_eval, seed=seed, n_letters=N_LETTERS)


def base_model(seed: int) -> tuple[torch.nn.Module, CompiledProgramInfo]:
    """The compiled Counter, balanced, with the study's weight noise drawn from ``seed``."""
    return prepared_model(PROGRAM, noise_std=STUDY_NOISE_STD, seed=seed)


def _plant_wrapper(model: torch.nn.Module, info: CompiledProgramInfo) -> torch.nn.Module:
    wrapped = copy_model(model)
    index = {label: i for i, label in enumerate(info.residual_labels)}
    out_var = info.output_label
    state = wrapped.state_dict()
    w_in, b_in, w_out = (
        state["blocks.2.mlp.in.weight"],
        state["blocks.2.mlp.in.bias"],
        state["blocks.2.mlp.out.weight"],
    )
    with torch.no_grad():
        for k in range(N_LETTERS + 1):
            source, target = index[f"{out_var}:{k}"], index[f"{out_var}:{k + 1}"]
            w_in[k].zero_()
            w_in[k, source] = WRAPPER_GAIN
            b_in[k] = -WRAPPER_GAIN / 2
            w_out[:, k].zero_()
            w_out[source, k] = -1.0
            w_out[target, k] = 1.0
    return wrapped


def _rerandomise_counting(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    circuit = operand_circuit(PROGRAM)
    broken = copy_model(model)
    gen = torch_generator(seed)
    prefixes = (f"blocks.{circuit.detector_layer}.mlp.", f"blocks.{circuit.head_layer}.attn.")
    with torch.no_grad():
        for key, param in broken.state_dict(keep_vars=True).items():
            if key.startswith(prefixes):
                param.copy_(torch.randn(param.shape, generator=gen) * param.detach().std().clamp_min(1e-2))
    return broken


def _train_on_count_b(model: torch.nn.Module, info: CompiledProgramInfo, seed: int, steps: int) -> None:
    batch_fn = training_batch_fn(
        info.config, target="ft", batch_size=64, seed=seed + 7, c_tr=0.0, n_letters=N_LETTERS
    )
    config = TrainConfig(steps=steps, batch_size=64, lr=1e-3, eval_every=steps, seed=seed, device="cpu")
    train(model, batch_fn, config, progress=False)


def _intact(base: torch.nn.Module, info: CompiledProgramInfo, seed: int, steps: int) -> torch.nn.Module:  # noqa: ARG001
    return add_weight_noise(base, std=STUDY_NOISE_STD, seed=seed + 1000)


def _wrapped(base: torch.nn.Module, info: CompiledProgramInfo, seed: int, steps: int) -> torch.nn.Module:  # noqa: ARG001
    return _plant_wrapper(base, info)


def _removed(base: torch.nn.Module, info: CompiledProgramInfo, seed: int, steps: int) -> torch.nn.Module:
    finetuned = _rerandomise_counting(base, seed)
    _train_on_count_b(finetuned, info, seed, steps)
    return finetuned


def _never_had_it(base: torch.nn.Module, info: CompiledProgramInfo, seed: int, steps: int) -> torch.nn.Module:
    finetuned = reinitialised(base, seed)
    _train_on_count_b(finetuned, info, seed, steps)
    return finetuned


CASES = {"intact": _intact, "wrapped": _wrapped, "removed": _removed, "never_had_it": _never_had_it}


def case_models(case: str, seed: int, *, train_steps: int = 150) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(base, fine-tuned) of one ground-truth case for one seed."""
    build = lookup(CASES, case, "tracr case")
    base, info = base_model(seed)
    return base, build(base, info, seed, train_steps)
