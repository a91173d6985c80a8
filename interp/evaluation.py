"""Exact-match accuracy at the answer position, reported beside the set's chance floors."""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp.batches import Batch, EvalSet
from interp.runtime import eval_mode


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and loss on one evaluation set, with its floors.

    ``majority_floor`` is the accuracy of always giving the most common answer; ``shortcut_floor`` the
    accuracy of the shortcut answer (None when the set has none).
    """

    name: str
    accuracy: float
    loss: float
    n: int
    majority_floor: float
    shortcut_floor: float | None

    def to_json(self) -> dict:
        return asdict(self)


def answer_logits(model: torch.nn.Module, batch: Batch) -> Float[Tensor, "batch d_vocab"]:
    """Logits at each sequence's answer position."""
    logits = model(batch.tokens)
    return logits[torch.arange(len(batch), device=logits.device), batch.answer_pos]


def eval_batch_size(device: torch.device) -> int:
    """Sequences per evaluation forward pass when none is given: small on a CPU, where activations of large
    batches fall out of cache and each example costs more, large on an accelerator."""
    return 64 if device.type == "cpu" else 512


def majority_floor(answers: Int[Tensor, " batch"]) -> float:
    """Accuracy of always answering the most common answer."""
    counts = torch.bincount(answers.flatten().cpu())
    return float(counts.max()) / max(1, answers.numel())


@torch.no_grad()
def predict(model: torch.nn.Module, batch: Batch, *, batch_size: int | None = None) -> tuple[Tensor, float]:
    """Argmax answers and the mean answer cross-entropy over ``batch``, evaluated in chunks of ``batch_size``
    (``eval_batch_size`` for the model's device when None)."""
    device = next(model.parameters()).device
    batch.check_vocab(model.cfg.d_vocab)
    preds, loss_sum = [], 0.0
    for chunk in batch.chunks(batch_size or eval_batch_size(device)):
        chunk = chunk.to(device)
        logits = answer_logits(model, chunk)
        loss_sum += float(F.cross_entropy(logits.float(), chunk.answers, reduction="sum"))
        preds.append(logits.argmax(-1).cpu())
    return torch.cat(preds), loss_sum / max(1, len(batch))


def evaluate(model: torch.nn.Module, eval_set: EvalSet, *, batch_size: int | None = None) -> EvalResult:
    """Exact-match accuracy of the argmax answer, with the majority and shortcut floors."""
    with eval_mode(model):
        preds, loss = predict(model, eval_set.batch, batch_size=batch_size)
    answers = eval_set.batch.answers.cpu()
    shortcut = None
    if eval_set.shortcut_answers is not None:
        shortcut = float((eval_set.shortcut_answers.cpu() == answers).float().mean())
    return EvalResult(
        name=eval_set.name,
        accuracy=float((preds == answers).float().mean()),
        loss=loss,
        n=len(answers),
        majority_floor=majority_floor(answers),
        shortcut_floor=shortcut,
    )
