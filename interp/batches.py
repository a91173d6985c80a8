"""Plain-tensor data that every ftmech function takes: a Batch of token sequences and an EvalSet.

A task (PCFG, tracr, stories, or a user's own) turns its examples into these; nothing in ``interp``
knows which task made them.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.errors import DataError


@dataclass(frozen=True)
class Batch:
    """Token sequences with one supervised answer each.

    ``answer_pos[i]`` is the position whose next-token logits must predict ``answers[i]`` (the ART
    position of the study's format). ``loss_mask`` marks positions whose next token counts in the
    full-sequence loss. ``labels`` carries named per-example integers (e.g. ``count_a``) for probes.
    """

    tokens: Int[Tensor, "batch pos"]
    answer_pos: Int[Tensor, " batch"]
    answers: Int[Tensor, " batch"]
    loss_mask: Bool[Tensor, "batch pos"] | None = None
    labels: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.tokens.ndim != 2:
            raise DataError(f"tokens must be [batch, pos], got shape {tuple(self.tokens.shape)}")
        if self.answer_pos.shape != (n,) or self.answers.shape != (n,):
            raise DataError("answer_pos and answers must have one entry per sequence")
        for name, value in self.labels.items():
            if value.shape[0] != n:
                raise DataError(f"label '{name}' has {value.shape[0]} entries for {n} sequences")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> "Batch":
        """The same batch on ``device`` (``non_blocking`` copies from pinned memory overlap compute on CUDA)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """The same batch in page-locked host memory, for fast asynchronous copies to a GPU."""
        return self._map(torch.Tensor.pin_memory)

    def _map(self, fn: Callable[[Tensor], Tensor]) -> "Batch":
        return Batch(
            tokens=fn(self.tokens),
            answer_pos=fn(self.answer_pos),
            answers=fn(self.answers),
            loss_mask=None if self.loss_mask is None else fn(self.loss_mask),
            labels={k: fn(v) for k, v in self.labels.items()},
        )

    def slice(self, start: int, stop: int) -> "Batch":
        """Examples ``start:stop``."""
        return Batch(
            tokens=self.tokens[start:stop],
            answer_pos=self.answer_pos[start:stop],
            answers=self.answers[start:stop],
            loss_mask=None if self.loss_mask is None else self.loss_mask[start:stop],
            labels={k: v[start:stop] for k, v in self.labels.items()},
        )

    def chunks(self, size: int) -> Iterator["Batch"]:
        """Consecutive sub-batches of at most ``size`` examples."""
        for start in range(0, len(self), size):
            yield self.slice(start, start + size)

    def check_vocab(self, d_vocab: int) -> None:
        """Raise DataError if any token id is outside ``[0, d_vocab)``."""
        bad = (self.tokens < 0) | (self.tokens >= d_vocab)
        if bool(bad.any()):
            value = int(self.tokens[bad][0])
            raise DataError(f"token id {value} is out of the model's vocabulary (d_vocab {d_vocab})")


def concat_batches(batches: list[Batch]) -> Batch:
    """One batch holding all examples of ``batches`` (same sequence length)."""
    if not batches:
        raise DataError("no batches to concatenate")
    masks = [b.loss_mask for b in batches]
    return Batch(
        tokens=torch.cat([b.tokens for b in batches]),
        answer_pos=torch.cat([b.answer_pos for b in batches]),
        answers=torch.cat([b.answers for b in batches]),
        loss_mask=None if any(m is None for m in masks) else torch.cat(masks),
        labels={k: torch.cat([b.labels[k] for b in batches]) for k in batches[0].labels},
    )


@dataclass(frozen=True)
class EvalSet:
    """A fixed, named evaluation set and the answers of its shortcut (for the chance floors).

    ``shortcut_answers`` is what a model exploiting the planted correlation would answer (e.g. the
    token of count_a + q when asked for count_b); None when the set has no such shortcut.
    """

    name: str
    batch: Batch
    shortcut_answers: Int[Tensor, " batch"] | None = None
