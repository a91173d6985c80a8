"""One-shot saliency pruning (the study's Alg. 3) and pruning baselines.

Context: a fine-tuned model that has lost a pretraining capability may only have wrapped it. If a
handful of units implement the wrapper, removing them should bring the pretraining behaviour back.

Method (protocol §4): one forward/backward pass of the pretraining-task loss (cross-entropy of the
answer token) on a scoring batch; each unit w is scored by grad(w) . w. Zeroing w changes the loss by
about -grad(w) . w to first order, so the top-K units are those whose removal lowers the
pretraining loss most. No iteration, no retraining, biases left alone. Three granularities:

- ``"neuron"``: an MLP hidden unit n of layer l (``"L0.mlp.n42"``). Its score is the dot product over
  W_out[:, n], which equals the attribution act_n x dL/dact_n summed over positions; pruning zeroes
  W_in[n, :] (and the gate row) and W_out[:, n], which is exactly zero-ablating ``hooks.mlp_post(l)[..., n]``.
- ``"row"``: a row (torch [out, in] layout) of any attention q/k/v/o or MLP in/gate/out weight, the
  study's "a row in the weight matrix" (``"L1.attn.W_V.row7"``, ``"L0.mlp.W_out.row3"``); in a GAM model
  also a memory slot (``"L0.mixer.W_mem.row5"``, a row of the memory bank) or a gate row.
- ``"weight"``: a single entry of those matrices (``"L1.attn.W_V[7,3]"``), as in the Tracr figures.

Embeddings, unembedding, norms and biases are never pruned. Every function works on a deep copy or
through hooks: the caller's model is never changed.

Baselines: ``magnitude_scores``, ``wanda_scores`` (|W| x input norm, Sun et al. 2023) and
``random_scores`` rank units by importance, so they prune the *lowest* scores first. A learned
neuron mask (``interp.masks.learn_mask``) extends the study.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from interp import weights
from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.evaluation import answer_logits, evaluate
from interp.models import copy_model, model_device
from interp.runtime import eval_mode, torch_generator
from interp.weights import MATRIX_KEY, torch_layout, transposed_keys

Level = Literal["neuron", "row", "weight"]
LEVELS = ("neuron", "row", "weight")

_MATRIX_NAME = {
    "q": "W_Q",
    "k": "W_K",
    "v": "W_V",
    "o": "W_O",
    "in": "W_in",
    "gate": "W_gate",
    "out": "W_out",
    "memory": "W_mem",
}
_KEY_PART = {v: k for k, v in _MATRIX_NAME.items()}
_UNIT = re.compile(
    r"^L(?P<layer>\d+)\.(?:mlp\.n(?P<neuron>\d+)"
    r"|(?P<block>attn|mlp|mixer)\.(?P<matrix>W_\w+?)(?:\.row(?P<row>\d+)|\[(?P<r>\d+),(?P<c>\d+)\]))$"
)


# --- units and their names ---------------------------------------------------------------------------


def prunable_matrices(model: torch.nn.Module) -> list[str]:
    """State-dict keys of every attention q/k/v/o and MLP in/gate/out weight, in block order."""
    return [key for key in model.state_dict() if MATRIX_KEY.match(key)]


def matrix_name(key: str) -> str:
    """``blocks.1.attn.v.weight`` -> ``L1.attn.W_V``."""
    m = MATRIX_KEY.match(key)
    if m is None:
        raise ConfigError(f"'{key}' is not a prunable weight matrix")
    return f"L{m.group(1)}.{m.group(2)}.{_MATRIX_NAME[m.group(3)]}"


def _matrix_key(layer: int, block: str, matrix: str) -> str:
    if matrix not in _KEY_PART:
        raise ConfigError(f"unknown matrix '{matrix}' in a unit name; use one of {', '.join(_KEY_PART)}")
    return weights.block_param(layer, block, _KEY_PART[matrix])


def _mlp_keys(state: dict[str, Tensor], layer: int) -> tuple[str, str | None, str]:
    w_in, gate, w_out = (weights.mlp(layer, part) for part in ("in", "gate", "out"))
    if w_in not in state or w_out not in state:
        raise ConfigError(f"layer {layer} has no MLP (attention-only model?); use level 'row' or 'weight'")
    return w_in, (gate if gate in state else None), w_out


def _zero_unit(state: dict[str, Tensor], unit: str) -> None:
    """Zero one named unit in place in ``state`` (tensors of the model being edited)."""
    m = _UNIT.match(unit)
    if m is None:
        raise ConfigError(
            f"cannot parse unit '{unit}'; use names like L0.mlp.n42, L1.attn.W_V.row7 or L1.attn.W_V[7,3]"
        )
    layer = int(m.group("layer"))
    if m.group("neuron") is not None:
        n = int(m.group("neuron"))
        w_in, gate, w_out = _mlp_keys(state, layer)
        if n >= state[w_out].shape[1]:
            raise ConfigError(f"unit '{unit}': layer {layer} has {state[w_out].shape[1]} neurons")
        state[w_out][:, n] = 0
        state[w_in][n, :] = 0
        if gate is not None:
            state[gate][n, :] = 0
        return
    key = _matrix_key(layer, m.group("block"), m.group("matrix"))
    if key not in state:
        raise ConfigError(f"unit '{unit}': the model has no weight '{key}'")
    weight = state[key]
    if m.group("row") is not None:
        row = int(m.group("row"))
        if row >= weight.shape[0]:
            raise ConfigError(f"unit '{unit}': {key} has {weight.shape[0]} rows")
        weight[row, :] = 0
        return
    r, c = int(m.group("r")), int(m.group("c"))
    if r >= weight.shape[0] or c >= weight.shape[1]:
        raise ConfigError(f"unit '{unit}': {key} has shape {tuple(weight.shape)}")
    weight[r, c] = 0


def prune_units(model: torch.nn.Module, units: Iterable[str]) -> torch.nn.Module:
    """A deep copy of ``model`` with the named units zeroed (the original is untouched)."""
    pruned = copy_model(model)
    state = torch_layout(pruned.state_dict(), transposed_keys(pruned))
    with torch.no_grad():
        for unit in units:
            _zero_unit(state, unit)
    return pruned


# --- scores ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitScores:
    """One score per unit, concatenated over matrices (or MLP layers), and the pruning order.

    ``groups`` holds (name prefix, number of units, columns) per matrix; names are built on demand so
    weight-level scores of a large model do not need millions of strings. ``prune_highest`` says
    whether the highest (saliency) or the lowest (importance baselines) scores are pruned first.
    """

    level: Level
    method: str
    groups: tuple[tuple[str, int, int], ...]
    scores: Float[Tensor, " unit"]
    prune_highest: bool

    def __len__(self) -> int:
        return self.scores.numel()

    def name(self, index: int) -> str:
        """The human-readable name of flat unit ``index``."""
        for prefix, size, n_cols in self.groups:
            if index < size:
                if self.level == "neuron":
                    return f"{prefix}.n{index}"
                if self.level == "row":
                    return f"{prefix}.row{index}"
                r, c = divmod(index, n_cols)
                return f"{prefix}[{r},{c}]"
            index -= size
        raise IndexError(f"unit index out of range for {len(self)} units")

    def order(self, k: int | None = None) -> Tensor:
        """Flat indices of the first ``k`` units to prune (all when None); ties keep unit order."""
        keys = -self.scores if self.prune_highest else self.scores
        idx = torch.sort(keys, stable=True).indices
        return idx if k is None else idx[:k]

    def top(self, k: int) -> tuple[str, ...]:
        """Names of the first ``k`` units to prune."""
        if k > len(self):
            raise ConfigError(f"k {k} exceeds the {len(self)} {self.level} units of the model")
        return tuple(self.name(int(i)) for i in self.order(k))

    def by_name(self) -> dict[str, float]:
        """All scores by unit name (for neuron and row levels; weight level can be very large)."""
        return {self.name(i): float(s) for i, s in enumerate(self.scores)}

    def to_json(self, top: int = 20) -> dict:
        idx = self.order(min(top, len(self)))
        return {
            "level": self.level,
            "method": self.method,
            "prune_highest": self.prune_highest,
            "n_units": len(self),
            "top": [{"unit": self.name(int(i)), "score": float(self.scores[i])} for i in idx],
        }


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ConfigError(f"unknown pruning level '{level}'; use neuron, row or weight")


def _as_batch(data: Batch | EvalSet) -> Batch:
    batch = data.batch if isinstance(data, EvalSet) else data
    if len(batch) == 0:
        raise DataError("pruning needs a non-empty scoring batch")
    return batch


def _n_layers_with_mlp(state: dict[str, Tensor], n_layers: int) -> list[int]:
    return [layer for layer in range(n_layers) if weights.mlp(layer, "out") in state]


def _reduce(
    model: torch.nn.Module, level: Level, per_weight: dict[str, Tensor], method: str, prune_highest: bool
) -> UnitScores:
    """Sum per-weight scores into units of ``level``."""
    groups, parts = [], []
    if level == "neuron":
        layers = _n_layers_with_mlp(per_weight, model.cfg.n_layers)
        if not layers:
            raise ConfigError("the model has no MLP neurons (attention-only); use level 'row' or 'weight'")
        for layer in layers:
            out = per_weight[weights.mlp(layer, "out")]  # (d_model, d_mlp)
            groups.append((f"L{layer}.mlp", out.shape[1], 1))
            parts.append(out.sum(0))
    else:
        for key in prunable_matrices(model):
            values = per_weight[key]
            if level == "row":
                groups.append((matrix_name(key), values.shape[0], values.shape[1]))
                parts.append(values.sum(1))
            else:
                groups.append((matrix_name(key), values.numel(), values.shape[1]))
                parts.append(values.flatten())
    return UnitScores(level, method, tuple(groups), torch.cat(parts).detach().cpu(), prune_highest)


def _score_keys(model: torch.nn.Module, level: Level) -> list[str]:
    keys = prunable_matrices(model)
    if level == "neuron":
        keys = [k for k in keys if k.endswith("mlp.out.weight")]
    if not keys:
        raise ConfigError(f"the model has no {level}-level units to prune")
    return keys


def loss_gradients(
    model: torch.nn.Module, data: Batch | EvalSet, keys: Sequence[str], *, batch_size: int = 256
) -> tuple[dict[str, Tensor], float]:
    """Gradients of the mean answer cross-entropy over ``data`` w.r.t. the named weights, and the loss.

    Uses ``torch.autograd.grad``, so the model's ``.grad`` fields are left alone.
    """
    batch = _as_batch(data)
    batch.check_vocab(model.cfg.d_vocab)
    params = model.state_dict(keep_vars=True)
    targets = [params[k] for k in keys]
    device = model_device(model)
    grads = [torch.zeros_like(t) for t in targets]
    total = 0.0
    with eval_mode(model):
        for chunk in batch.chunks(batch_size):
            chunk = chunk.to(device)
            loss = F.cross_entropy(answer_logits(model, chunk).float(), chunk.answers, reduction="sum")
            parts = torch.autograd.grad(loss / len(batch), targets, allow_unused=True)
            for g, part in zip(grads, parts, strict=True):
                if part is not None:
                    g += part
            total += float(loss.detach())
    return dict(zip(keys, grads, strict=True)), total / len(batch)


def saliency_scores(
    model: torch.nn.Module, data: Batch | EvalSet, *, level: Level = "neuron", batch_size: int = 256
) -> UnitScores:
    """The study's grad x weight score of every unit on the pretraining-task loss (highest pruned first)."""
    _check_level(level)
    keys = _score_keys(model, level)
    grads, _ = loss_gradients(model, data, keys, batch_size=batch_size)
    state = model.state_dict()
    per_weight = torch_layout({k: (grads[k] * state[k]).detach() for k in keys}, transposed_keys(model))
    return _reduce(model, level, per_weight, "saliency", prune_highest=True)


def magnitude_scores(model: torch.nn.Module, *, level: Level = "neuron") -> UnitScores:
    """Importance by weight magnitude: |W| per weight, squared norms per row or neuron (lowest pruned first)."""
    _check_level(level)
    state = model.state_dict()
    keys = _score_keys(model, level)
    per_weight = {k: state[k].detach().abs() if level == "weight" else state[k].detach() ** 2 for k in keys}
    per_weight = torch_layout(per_weight, transposed_keys(model))
    return _reduce(model, level, per_weight, "magnitude", prune_highest=False)


def random_scores(model: torch.nn.Module, *, level: Level = "neuron", seed: int = 0) -> UnitScores:
    """Uniform random scores: a random-pruning control (lowest pruned first)."""
    _check_level(level)
    state = model.state_dict()
    gen = torch_generator(seed)
    keys = _score_keys(model, level)
    per_weight = torch_layout(
        {k: torch.rand(state[k].shape, generator=gen) for k in keys}, transposed_keys(model)
    )
    return _reduce(model, level, per_weight, "random", prune_highest=False)


@torch.no_grad()
def wanda_scores(
    model: torch.nn.Module, data: Batch | EvalSet, *, level: Level = "neuron", batch_size: int = 256
) -> UnitScores:
    """Wanda importance |W_ij| x ||X_j||_2 (input norm over every token of ``data``); lowest pruned first."""
    _check_level(level)
    batch = _as_batch(data)
    keys = _score_keys(model, level)
    if transposed_keys(model) & set(keys):
        raise ConfigError(
            "wanda_scores reads torch [out, in] weights; this model stores Conv1D [in, out] weights"
        )
    params = model.state_dict(keep_vars=True)
    owners = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            for key in keys:
                if p is params[key]:
                    owners[key] = module
    sq_norms = {k: torch.zeros(params[k].shape[1], device=params[k].device) for k in keys}

    def make_hook(key: str):
        def hook(module, args) -> None:  # noqa: ARG001
            x = args[0]
            sq_norms[key] += x.detach().float().reshape(-1, x.shape[-1]).pow(2).sum(0)

        return hook

    handles = [owners[k].register_forward_pre_hook(make_hook(k)) for k in keys]
    try:
        with eval_mode(model):
            device = model_device(model)
            for chunk in batch.chunks(batch_size):
                model(chunk.to(device).tokens)
    finally:
        for handle in handles:
            handle.remove()
    per_weight = {k: params[k].detach().abs() * sq_norms[k].sqrt()[None, :] for k in keys}
    return _reduce(model, level, per_weight, "wanda", prune_highest=False)


# --- pruning ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """A pruned copy of a model and the units removed, in pruning order, with their scores."""

    model: torch.nn.Module
    units: tuple[str, ...]
    scores: tuple[float, ...]
    level: Level
    method: str

    def to_json(self) -> dict:
        return {
            "level": self.level,
            "method": self.method,
            "units": list(self.units),
            "scores": list(self.scores),
        }


def prune_by_saliency(
    model: torch.nn.Module,
    data: Batch | EvalSet,
    *,
    k: int,
    level: Level = "neuron",
    scores: UnitScores | None = None,
    batch_size: int = 256,
) -> PruneResult:
    """Zero the top-``k`` units by grad x weight on ``data`` (or by ``scores``) in a copy of ``model``."""
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    scores = scores or saliency_scores(model, data, level=level, batch_size=batch_size)
    idx = scores.order(k)
    units = scores.top(k)
    return PruneResult(
        model=prune_units(model, units),
        units=units,
        scores=tuple(float(scores.scores[i]) for i in idx),
        level=scores.level,
        method=scores.method,
    )


@dataclass(frozen=True)
class PruneCurve:
    """Accuracy (and loss) on each evaluation set after pruning the first K units, for each K."""

    ks: tuple[int, ...]
    accuracy: dict[str, tuple[float, ...]]
    loss: dict[str, tuple[float, ...]]
    units: tuple[str, ...]  # pruning order; the first K were removed at K
    scores: tuple[float, ...]
    level: Level
    method: str

    def best(self, eval_name: str, k_max: int | None = None) -> tuple[int, float]:
        """(K, accuracy) of the highest accuracy on ``eval_name`` with K <= ``k_max``."""
        if eval_name not in self.accuracy:
            raise DataError(f"no evaluation set '{eval_name}'; the curve has {sorted(self.accuracy)}")
        pairs = [
            (k, a)
            for k, a in zip(self.ks, self.accuracy[eval_name], strict=True)
            if k_max is None or k <= k_max
        ]
        return max(pairs, key=lambda p: (p[1], -p[0]))

    def to_json(self) -> dict:
        return {
            "ks": list(self.ks),
            "accuracy": {k: list(v) for k, v in self.accuracy.items()},
            "loss": {k: list(v) for k, v in self.loss.items()},
            "units": list(self.units),
            "scores": list(self.scores),
            "level": self.level,
            "method": self.method,
        }


def pruning_curve(
    model: torch.nn.Module,
    score_data: Batch | EvalSet | None,
    eval_sets: Sequence[EvalSet],
    *,
    ks: Iterable[int] = range(0, 16),
    level: Level = "neuron",
    scores: UnitScores | None = None,
    batch_size: int = 256,
) -> PruneCurve:
    """Evaluate copies of ``model`` with the top-K units (one ranking, scored once on ``score_data``, or
    ``scores`` when given) removed, per K."""
    ks = tuple(sorted(set(ks)))
    if not ks or ks[0] < 0:
        raise ConfigError(f"ks must be non-negative integers, got {ks}")
    if not eval_sets:
        raise DataError("pruning_curve needs at least one evaluation set")
    if scores is None:
        if score_data is None:
            raise ConfigError("pruning_curve needs score_data to score units, or scores")
        scores = saliency_scores(model, score_data, level=level, batch_size=batch_size)
    units = scores.top(ks[-1])
    idx = scores.order(ks[-1])
    pruned = copy_model(model)
    state = torch_layout(pruned.state_dict(), transposed_keys(pruned))
    accuracy: dict[str, list[float]] = {e.name: [] for e in eval_sets}
    loss: dict[str, list[float]] = {e.name: [] for e in eval_sets}
    done = 0
    for k in ks:
        with torch.no_grad():
            for unit in units[done:k]:
                _zero_unit(state, unit)
        done = k
        for eval_set in eval_sets:
            result = evaluate(pruned, eval_set)
            accuracy[eval_set.name].append(result.accuracy)
            loss[eval_set.name].append(result.loss)
    return PruneCurve(
        ks=ks,
        accuracy={k: tuple(v) for k, v in accuracy.items()},
        loss={k: tuple(v) for k, v in loss.items()},
        units=units,
        scores=tuple(float(scores.scores[i]) for i in idx),
        level=scores.level,
        method=scores.method,
    )
