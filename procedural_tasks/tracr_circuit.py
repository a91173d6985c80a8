"""The compiled circuit's ground truth, read from the residual labels and the compiled weights.

The operand enters each program in exactly one MLP neuron, the detector (Counter: block-0 neuron reading
``tokens:a``, writing ``is_operand:True``; Max-id: block-1 neuron reading ``n_larger:4``, writing
``is_target:True``), and one attention head selects the positions it flags (Counter: block 1, the counting
head; Max-id: block 2, the read head). ``swap_operand`` exchanges the detector's two input columns and gives
an exact compiled model of O_FT: the Scr.+FT control "pretrained to count O_FT".
"""

import copy
from dataclasses import dataclass

import torch

from interp import weights
from interp.errors import CheckpointError, ConfigError
from procedural_tasks.tracr_models import CompiledProgramInfo, load_compiled
from procedural_tasks.tracr_programs import CounterConfig


@dataclass(frozen=True)
class OperandCircuit:
    """Where a compiled program reads its operand, derived from residual labels and compiled weights."""

    program: str
    detector_layer: int  # block whose MLP maps the operand's input direction to the flag
    detector_neuron: int  # the hidden neuron that reads the O_PT direction and writes "<flag>:True"
    other_neuron: int  # the neuron that writes "<flag>:False"
    input_direction: str  # residual label the detector reads, e.g. "tokens:a" or "n_larger_9:4"
    flag: str  # the boolean map's label, e.g. "is_operand_5"
    head_layer: int  # block whose attention keys read "<flag>:True": the counting (Counter) or read head

    def to_json(self) -> dict:
        return dict(self.__dict__)


def operand_direction(info: CompiledProgramInfo, operand: str | int) -> str:
    """The residual label that names ``operand`` at the detector's input.

    Counter reads the token (``tokens:b``); Max-identifier reads how many letters are larger than the
    current one, so the O-th largest letter is ``n_larger_*:(O-1)``.
    """
    if isinstance(info.config, CounterConfig):
        label = f"tokens:{operand}"
    else:
        prefixes = {
            lab.rpartition(":")[0]
            for lab in info.residual_labels
            if lab.startswith("n_larger_") and ":" in lab
        }
        if len(prefixes) != 1:
            raise CheckpointError(f"cannot find the n_larger variable in {sorted(prefixes)}")
        label = f"{prefixes.pop()}:{int(operand) - 1}"
    if label not in info.residual_labels:
        raise ConfigError(f"operand {operand!r} has no residual direction {label!r} in {info.name}")
    return label


def operand_circuit(program: str) -> OperandCircuit:
    """Find the operand detector and the head that reads its flag in the clean compiled weights."""
    model, info = load_compiled(program)
    state = model.state_dict()
    index = {label: i for i, label in enumerate(info.residual_labels)}
    column = index[operand_direction(info, info.config.operand_pt)]
    readers = [
        (layer, int(n))
        for layer in range(model.cfg.n_layers)
        for n in torch.nonzero(state[weights.mlp(layer, "in")][:, column]).flatten().tolist()
    ]
    if len(readers) != 1:
        raise CheckpointError(f"{program}: expected one MLP neuron reading the operand, found {readers}")
    layer, neuron = readers[0]
    w_out = state[weights.mlp(layer, "out")]
    written = [info.residual_labels[i] for i in torch.nonzero(w_out[:, neuron]).flatten().tolist()]
    if len(written) != 1 or not written[0].endswith(":True"):
        raise CheckpointError(f"{program}: the operand neuron writes {written}, not one '<flag>:True'")
    flag = written[0].rpartition(":")[0]
    false_rows = torch.nonzero(w_out[index[f"{flag}:False"]]).flatten().tolist()
    heads = [
        h
        for h in range(model.cfg.n_layers)
        if bool(state[weights.attn(h, "k")][:, index[f"{flag}:True"]].any())
    ]
    if len(false_rows) != 1 or len(heads) != 1:
        raise CheckpointError(f"{program}: unexpected circuit (False neurons {false_rows}, heads {heads})")
    return OperandCircuit(
        program=program,
        detector_layer=layer,
        detector_neuron=neuron,
        other_neuron=false_rows[0],
        input_direction=info.residual_labels[column],
        flag=flag,
        head_layer=heads[0],
    )


def swap_operand(model: torch.nn.Module, info: CompiledProgramInfo, operand: str | int) -> torch.nn.Module:
    """A copy of the compiled ``model`` that computes the program for ``operand`` instead of O_PT.

    Exchanges the detector MLP's input columns for O_PT's and ``operand``'s directions; every other
    weight is untouched. Exact only on the clean compiled weights (before balancing or noise).
    """
    circuit = operand_circuit(info.name)
    index = {label: i for i, label in enumerate(info.residual_labels)}
    a = index[operand_direction(info, info.config.operand_pt)]
    b = index[operand_direction(info, operand)]
    edited = copy.deepcopy(model)
    state = edited.state_dict()
    w_in = state[weights.mlp(circuit.detector_layer, "in")]
    with torch.no_grad():
        w_in[:, [a, b]] = w_in[:, [b, a]].clone()
    return edited
