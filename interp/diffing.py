"""What fine-tuning changed: weights, attention and next-token distributions, base vs fine-tuned.

- ``weight_diff``: for every weight, ||dW||_F, ||dW|| / ||W_base||, and for matrices the effective rank
  of dW (Roy & Vetterli 2007: exp of the entropy of the normalised singular values) and the share of
  ||dW||_F^2 in its top singular direction. A wrapper predicts small, low-rank, localised changes.
- ``attention_diff``: the attention mass that a query position (e.g. ART, ``"answer"``) puts on groups
  of key positions (e.g. operand-a vs operand-b tokens), per layer and head, for both models (the
  study's Tracr attention maps, §2.3).
- ``kl_by_position``: KL(base || fine-tuned) of the next-token distributions at every position, so a
  change confined to the answer position is told apart from a change everywhere.

The two models must share an architecture; nothing here changes either model.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool
from torch import Tensor

from interp import hooks
from interp.activations import Position, check_position, collect_activations
from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.models import model_device
from interp.runtime import eval_mode


def _check_same_architecture(base: torch.nn.Module, finetuned: torch.nn.Module) -> None:
    a, b = base.state_dict(), finetuned.state_dict()
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))[:3]
        raise ConfigError(f"the models have different weights ({only}); compare models of one architecture")
    for key in a:
        if a[key].shape != b[key].shape:
            raise ConfigError(
                f"weight {key} has shape {tuple(a[key].shape)} in base and {tuple(b[key].shape)} in finetuned"
            )


@dataclass(frozen=True)
class MatrixDiff:
    """The change of one weight (a state_dict key, torch [out, in] layout for matrices)."""

    name: str
    shape: tuple[int, ...]
    norm: float  # ||dW||_F
    base_norm: float  # ||W_base||_F
    relative: float | None  # ||dW|| / ||W_base||; None when W_base is zero
    effective_rank: float | None  # exp(entropy of sigma / sum sigma); 0 for dW = 0; None for vectors
    top_sv_share: float | None  # sigma_1^2 / sum sigma^2; None for vectors or dW = 0
    max_abs: float  # largest |dW| entry


@dataclass(frozen=True)
class WeightDiffResult:
    """Per-weight changes, in state_dict order, and the overall relative change."""

    matrices: tuple[MatrixDiff, ...]
    total_norm: float
    total_relative: float

    def to_json(self) -> dict:
        return {
            "total_norm": self.total_norm,
            "total_relative": self.total_relative,
            "matrices": [{**m.__dict__, "shape": list(m.shape)} for m in self.matrices],
        }


def effective_rank(matrix: Tensor) -> float:
    """Roy & Vetterli effective rank: exp(H(p)), p = singular values / their sum (0 for a zero matrix)."""
    sv = torch.linalg.svdvals(matrix.detach().double().cpu())
    total = float(sv.sum())
    if total == 0.0:
        return 0.0
    p = sv / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def weight_diff(base: torch.nn.Module, finetuned: torch.nn.Module) -> WeightDiffResult:
    """Norms, relative norms, effective rank and top-direction share of every weight's change."""
    _check_same_architecture(base, finetuned)
    a, b = base.state_dict(), finetuned.state_dict()
    rows = []
    sq_diff = sq_base = 0.0
    for key in a:
        w = a[key].detach().double().cpu()
        delta = b[key].detach().double().cpu() - w
        norm, base_norm = float(delta.norm()), float(w.norm())
        sq_diff, sq_base = sq_diff + norm**2, sq_base + base_norm**2
        rank = share = None
        if delta.ndim == 2:
            rank = effective_rank(delta)
            if norm > 0:
                sv = torch.linalg.svdvals(delta)
                share = float(sv[0] ** 2 / (sv**2).sum())
        rows.append(
            MatrixDiff(
                name=key,
                shape=tuple(delta.shape),
                norm=norm,
                base_norm=base_norm,
                relative=norm / base_norm if base_norm > 0 else None,
                effective_rank=rank,
                top_sv_share=share,
                max_abs=float(delta.abs().max()) if delta.numel() else 0.0,
            )
        )
    total = math.sqrt(sq_diff)
    return WeightDiffResult(tuple(rows), total, total / math.sqrt(sq_base) if sq_base > 0 else 0.0)


@dataclass(frozen=True)
class AttentionDiffResult:
    """Mean attention mass from the query position to each key group, [layer][head] per model."""

    query_pos: Position
    mass: dict[str, dict[str, list[list[float]]]]  # model ("base", "finetuned") -> group -> [layer][head]
    n_examples: int

    def difference(self, group: str) -> list[list[float]]:
        """finetuned - base mass on ``group``, [layer][head]."""
        base, ft = self.mass["base"][group], self.mass["finetuned"][group]
        return [[f - b for b, f in zip(rb, rf, strict=True)] for rb, rf in zip(base, ft, strict=True)]

    def to_json(self) -> dict:
        groups = list(self.mass["base"])
        return {
            "query_pos": self.query_pos,
            "n_examples": self.n_examples,
            "mass": self.mass,
            "difference": {g: self.difference(g) for g in groups},
        }


def attention_mass(
    model: torch.nn.Module,
    batch: Batch,
    *,
    query_pos: Position,
    key_groups: Mapping[str, Bool[Tensor, "batch pos"]],
    batch_size: int = 256,
) -> dict[str, list[list[float]]]:
    """Mean attention mass from ``query_pos`` onto each group of key positions, [layer][head] per group."""
    names = [hooks.attn_pattern(layer) for layer in range(model.cfg.n_layers)]
    if names[0] not in model.hook_dict:
        raise ConfigError(
            f"attention maps need attention; this {getattr(model.cfg, 'architecture', 'model')} model has none "
            "(a GAM mixes positions by convolution): drop --attend-to / key_groups and use the weight and KL diffs"
        )
    acts = collect_activations(model, batch, hook_names=names, position=query_pos, batch_size=batch_size)
    out: dict[str, list[list[float]]] = {}
    for group, mask in key_groups.items():
        if mask.shape != batch.tokens.shape:
            raise DataError(
                f"key group '{group}' has shape {tuple(mask.shape)}, tokens {tuple(batch.tokens.shape)}"
            )
        weights = mask.to(torch.float32).cpu()[:, None, :]  # (example, 1, key_pos)
        out[group] = [(acts[name] * weights).sum(-1).mean(0).tolist() for name in names]
    return out


def attention_diff(
    base: torch.nn.Module,
    finetuned: torch.nn.Module,
    data: Batch | EvalSet,
    *,
    query_pos: Position = "answer",
    key_groups: Mapping[str, Bool[Tensor, "batch pos"]],
    batch_size: int = 256,
) -> AttentionDiffResult:
    """Attention mass from ``query_pos`` onto each key group, per layer and head, for both models."""
    if query_pos is None:
        raise ConfigError("attention_diff needs one query position, e.g. query_pos='answer'")
    check_position(query_pos)
    if not key_groups:
        raise ConfigError("key_groups is empty; pass e.g. {'a': tokens == id_a, 'b': tokens == id_b}")
    _check_same_architecture(base, finetuned)
    batch = data.batch if isinstance(data, EvalSet) else data
    mass = {
        label: attention_mass(model, batch, query_pos=query_pos, key_groups=key_groups, batch_size=batch_size)
        for label, model in (("base", base), ("finetuned", finetuned))
    }
    return AttentionDiffResult(query_pos=query_pos, mass=mass, n_examples=len(batch))


@dataclass(frozen=True)
class KLResult:
    """KL(base || finetuned) of next-token distributions: mean per position and at the answer position."""

    per_position: tuple[float, ...]
    answer: float
    mean: float
    n_examples: int

    def to_json(self) -> dict:
        return {
            "direction": "KL(base || finetuned)",
            "per_position": list(self.per_position),
            "answer": self.answer,
            "mean": self.mean,
            "n_examples": self.n_examples,
        }


@torch.no_grad()
def kl_by_position(
    base: torch.nn.Module, finetuned: torch.nn.Module, data: Batch | EvalSet, *, batch_size: int = 256
) -> KLResult:
    """Mean KL(base || finetuned) of the next-token distribution at each position of ``data``."""
    _check_same_architecture(base, finetuned)
    batch = data.batch if isinstance(data, EvalSet) else data
    if len(batch) == 0:
        raise DataError("kl_by_position needs at least one sequence")
    batch.check_vocab(base.cfg.d_vocab)
    with eval_mode(base, finetuned):
        sums = torch.zeros(batch.tokens.shape[1], dtype=torch.float64)
        answer_sum = 0.0
        for chunk in batch.chunks(batch_size):
            tokens = chunk.tokens.to(model_device(base))
            logp = F.log_softmax(base(tokens).double(), -1)
            logq = F.log_softmax(finetuned(tokens.to(model_device(finetuned))).double().to(logp.device), -1)
            kl = (logp.exp() * (logp - logq)).sum(-1).cpu()  # (batch, pos)
            sums += kl.sum(0)
            answer_sum += float(kl[torch.arange(len(chunk)), chunk.answer_pos.cpu()].sum())
    per_position = sums / len(batch)
    return KLResult(
        per_position=tuple(float(v) for v in per_position),
        answer=answer_sum / len(batch),
        mean=float(per_position.mean()),
        n_examples=len(batch),
    )


def key_mask(tokens: Tensor, token_ids: Iterable[int]) -> Bool[Tensor, "batch pos"]:
    """Positions holding any of ``token_ids`` (e.g. the operand-a tokens, as an attention_diff key group)."""
    ids = torch.tensor(list(token_ids), dtype=tokens.dtype, device=tokens.device)
    return torch.isin(tokens, ids)
