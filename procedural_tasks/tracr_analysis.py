"""Analyses of a fine-tuned compiled program against the exact model it started from, using the compiled
circuit's ground truth: attention of the counting/read head onto O_PT vs O_FT keys, the operand detector's
activity, single-weight pruning, the weight diff and activation patching.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp import hooks
from interp.activations import collect_activations
from interp.batches import Batch
from interp.config import from_dict, to_dict
from interp.diffing import attention_mass, weight_diff
from interp.errors import CheckpointError, ConfigError
from interp.jsonio import write_json
from interp.patching import patch_across_models
from interp.pruning import loss_gradients, pruning_curve
from procedural_tasks.tracr_batches import (
    dataset_batch,
    eval_name,
    make_eval_data,
    make_score_data,
    tracr_eval_sets,
)
from procedural_tasks.tracr_circuit import OperandCircuit, operand_circuit
from procedural_tasks.tracr_finetuning import TracrFinetuneConfig
from procedural_tasks.tracr_models import CompiledProgramInfo, load_compiled, load_tracr_checkpoint
from procedural_tasks.tracr_preparation import prepared_model
from procedural_tasks.tracr_programs import CounterConfig, reference_max_identifier
from procedural_tasks.tracr_sampling import TracrDataset

ANALYSIS = "analysis.json"


def key_groups(info: CompiledProgramInfo, data: TracrDataset) -> dict[str, Bool[Tensor, "batch pos"]]:
    """Key positions holding O_PT vs O_FT (Counter: tokens a / b; Max-id: the O_PT-th / O_FT-th largest
    letter), BOS, and every other position."""
    tokens = torch.from_numpy(data.tokens)
    config = info.config
    if isinstance(config, CounterConfig):
        pt = tokens == info.input_encoding[config.operand_pt]
        ft = tokens == info.input_encoding[data.operand_ft]
    else:
        rows = data.letters.tolist()
        pt_letters = [reference_max_identifier(r, config.operand_pt, config.vocab) for r in rows]
        ft_letters = [reference_max_identifier(r, data.operand_ft, config.vocab) for r in rows]
        pt = tokens == torch.tensor([info.input_encoding[x] for x in pt_letters])[:, None]
        ft = tokens == torch.tensor([info.input_encoding[x] for x in ft_letters])[:, None]
    bos = torch.zeros_like(pt)
    bos[:, 0] = True
    return {"o_pt": pt, "o_ft": ft, "bos": bos, "other": ~(pt | ft | bos)}


def attention_masses(
    model: torch.nn.Module, info: CompiledProgramInfo, data: TracrDataset
) -> dict[str, list[float]]:
    """Mean attention from the answer position onto O_PT / O_FT / BOS / other keys, per layer (1 head)."""
    batch = dataset_batch(data, target="pt")
    mass = attention_mass(model, batch, query_pos="answer", key_groups=key_groups(info, data))
    return {group: [layer[0] for layer in per_layer] for group, per_layer in mass.items()}


def attention_map(
    model: torch.nn.Module, tokens: Tensor, *, layer: int
) -> Float[Tensor, "query_pos key_pos"]:
    """The one head's attention pattern of ``layer`` for a single input (the study's Fig. 10 maps)."""
    batch = Batch(
        tokens=tokens[None],
        answer_pos=torch.zeros(1, dtype=torch.long),
        answers=torch.zeros(1, dtype=torch.long),
    )
    acts = collect_activations(model, batch, hook_names=[hooks.attn_pattern(layer)], position=None)
    return acts[hooks.attn_pattern(layer)][0, 0]


def detector_activity(
    model: torch.nn.Module, info: CompiledProgramInfo, circuit: OperandCircuit, data: TracrDataset
) -> dict[str, float]:
    """Mean activation of the operand detector neuron (and its False twin) at O_PT and O_FT positions."""
    batch = dataset_batch(data, target="pt")
    name = hooks.mlp_post(circuit.detector_layer)
    acts = collect_activations(model, batch, hook_names=[name], position=None)[name]  # (example, pos, d_mlp)
    groups = key_groups(info, data)
    out = {}
    for neuron_name, neuron in (("detector", circuit.detector_neuron), ("other", circuit.other_neuron)):
        values = acts[..., neuron]
        for group in ("o_pt", "o_ft"):
            mask = groups[group]
            out[f"{neuron_name}@{group}"] = float(values[mask].mean()) if bool(mask.any()) else float("nan")
    return out


def gradient_share(model: torch.nn.Module, batch: Batch) -> dict[str, float]:
    """Share of the squared gradient norm of the answer loss per block component (attn/mlp per layer,
    embed, unembed): where plain SGD can move the model from here."""
    keys = [k for k, v in model.state_dict(keep_vars=True).items() if v.requires_grad]
    grads, _ = loss_gradients(model, batch, keys)
    total = sum(float(g.double().pow(2).sum()) for g in grads.values()) or 1.0
    share: dict[str, float] = {}
    for key, g in grads.items():
        part = key.split(".")
        group = f"{part[0]}.{part[1]}.{part[2]}" if part[0] == "blocks" else part[0]
        share[group] = share.get(group, 0.0) + float(g.double().pow(2).sum()) / total
    return share


@dataclass(frozen=True, kw_only=True)
class TracrAnalysisConfig:
    """What ``analyse_finetuned`` measures and on how much data."""

    prune_ks: tuple[int, ...] = (0, 1, 2, 3, 4, 8, 20)  # numbers of single weights pruned
    prune_level: Literal["neuron", "row", "weight"] = "weight"  # the study's Tracr figures prune weights
    score_n: int = 512  # inputs (C_Te = 0, O_PT answers) scoring grad x weight
    eval_n: int = 500  # inputs per evaluation set

    def __post_init__(self) -> None:
        if not self.prune_ks or min(self.prune_ks) < 0:
            raise ConfigError(f"prune_ks must be non-negative integers, got {self.prune_ks}")
        if self.prune_level not in ("neuron", "row", "weight"):
            raise ConfigError(f"unknown prune_level {self.prune_level!r}; use neuron, row or weight")
        if self.score_n < 1 or self.eval_n < 1:
            raise ConfigError("score_n and eval_n must be >= 1")


def analyse_finetuned(ckpt_dir: str | Path, *, config: TracrAnalysisConfig | None = None) -> dict[str, Any]:
    """Attention masses, detector activity, single-weight pruning, weight diff and patching of a fine-tuned
    model against the exact model it started from (rebuilt from its config); writes ``analysis.json``.

    Pruning scores grad x weight on the O_PT loss (C_Te = 0) and reports Acc O_PT / O_FT after removing
    the top-K weights; patching copies each block output of the start model into the fine-tuned one and
    reports how much O_PT accuracy that restores.
    """
    config = config or TracrAnalysisConfig()
    checkpoint = load_tracr_checkpoint(ckpt_dir)
    if checkpoint.metadata.get("stage") != "finetune":
        raise CheckpointError(
            f"{ckpt_dir} is a {checkpoint.metadata.get('stage')!r} run; analyse a fine-tuned one"
        )
    model, info = checkpoint.model, checkpoint.info
    ft = from_dict(TracrFinetuneConfig, checkpoint.metadata["stage_config"])
    seed = ft.train.seed
    start, _ = prepared_model(ft.program, noise_std=ft.noise_std, seed=seed, balance=ft.balance_mlps)
    circuit = operand_circuit(ft.program)
    program = info.config
    data = make_eval_data(program, config.eval_n, seed=seed, c_te=0, n_letters=ft.n_letters, q=ft.q)
    eval_sets = {
        s.name: s for s in tracr_eval_sets(program, config.eval_n, seed=seed, n_letters=ft.n_letters)
    }
    score = make_score_data(program, config.score_n, seed=seed, n_letters=ft.n_letters)
    curve = pruning_curve(
        model,
        dataset_batch(score, target="pt"),
        [eval_sets[eval_name("pt", 0)], eval_sets[eval_name("ft", 1)], eval_sets[eval_name("pt", 1)]],
        ks=config.prune_ks,
        level=config.prune_level,
    )
    diff = _weight_diff_summary(start, model, ft.program)
    patch = patch_across_models(
        start, model, eval_sets[eval_name("pt", 0)], hook_names=hooks.block_outputs(model.cfg.n_layers)
    )
    result = {
        "run": str(ckpt_dir),
        "program": ft.program,
        "lr_level": ft.lr_level,
        "c_tr": ft.c_tr,
        "seed": seed,
        "circuit": circuit.to_json(),
        "analysis_config": to_dict(config),
        **_head_and_detector(start, model, info, circuit, data),
        "pruning": curve.to_json(),
        "weight_diff": diff,
        "patching": patch.to_json(),
    }
    write_json(Path(ckpt_dir) / ANALYSIS, result)
    return result


def _head_and_detector(
    start: torch.nn.Module,
    model: torch.nn.Module,
    info: CompiledProgramInfo,
    circuit: OperandCircuit,
    data: TracrDataset,
) -> dict[str, Any]:
    """The counting/read head's attention masses and pattern on one input, and the detector's activity,
    before (``start``) and after (``finetuned``) fine-tuning."""
    example = torch.from_numpy(data.tokens[0])
    return {
        "attention": {
            "layer": circuit.head_layer,
            "start": attention_masses(start, info, data),
            "finetuned": attention_masses(model, info, data),
        },
        "attention_map": {
            "letters": data.letters[0].tolist(),
            "start": attention_map(start, example, layer=circuit.head_layer).tolist(),
            "finetuned": attention_map(model, example, layer=circuit.head_layer).tolist(),
        },
        "detector": {
            "start": detector_activity(start, info, circuit, data),
            "finetuned": detector_activity(model, info, circuit, data),
        },
    }


def _weight_diff_summary(start: torch.nn.Module, model: torch.nn.Module, program: str) -> dict[str, Any]:
    """The most-changed weight matrices, by norm and relative to the compiled weight where the compiler
    wrote one (elsewhere the base is the noise alone)."""
    diff = weight_diff(start, model)
    compiled = {k for k, v in load_compiled(program)[0].state_dict().items() if bool(v.any())}
    by_norm = sorted(diff.matrices, key=lambda m: m.norm, reverse=True)
    by_relative = sorted(
        (m for m in diff.matrices if m.name in compiled), key=lambda m: m.relative or 0.0, reverse=True
    )
    return {
        "total_relative": diff.total_relative,
        "top_norm": [_diff_row(m) for m in by_norm[:6]],
        "top_relative_compiled": [_diff_row(m) for m in by_relative[:6]],
    }


def _diff_row(m: Any) -> dict[str, Any]:
    return {"name": m.name, "norm": m.norm, "relative": m.relative, "top_sv_share": m.top_sv_share}
