"""Activation patching across models: which component carries the difference fine-tuning made?

Context: a base (pretrained) and a fine-tuned model of one architecture disagree on a task, e.g. the
pretraining task O_PT. Intuition: run the *source* model, cache one component's activation, and run
the *target* model with that activation written in. If the target's O_PT accuracy moves to the
source's, that component carries the change. Patching base -> fine-tuned asks which components would
restore the capability; fine-tuned -> base asks which carry the wrapper. Swap the arguments for the
other direction.

``patch_across_models`` patches one hook at a time (all positions by default, or only the answer
position, one fixed position, or a [batch, pos] mask) and reports a per-example metric averaged over
the data: ``answer_accuracy`` (default), ``answer_logprob``, or any callable
``metric(logits, batch) -> [batch]``, as in TransformerLens ``patching.py``. ``patched_logits`` gives
the target's logits with several hooks patched at once. Neither model is changed: patches live in
hooks that are removed after each run.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.activations import check_hook_names, query_dim, select_positions
from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.gam import GAMModel
from interp.models import model_device
from interp.runtime import eval_mode

Metric = Callable[[Tensor, Batch], Tensor]
Positions = int | str | Tensor | None


def answer_accuracy(logits: Float[Tensor, "batch pos d_vocab"], batch: Batch) -> Float[Tensor, " batch"]:
    """1 where the argmax at the answer position is the answer, else 0."""
    rows = torch.arange(len(batch), device=logits.device)
    return (logits[rows, batch.answer_pos].argmax(-1) == batch.answers).float()


def answer_logprob(logits: Float[Tensor, "batch pos d_vocab"], batch: Batch) -> Float[Tensor, " batch"]:
    """Log-probability of the answer at the answer position."""
    rows = torch.arange(len(batch), device=logits.device)
    logp = torch.log_softmax(logits[rows, batch.answer_pos].float(), -1)
    return logp[rows, batch.answers]


def _check_positions(positions: Positions, batch: Batch) -> None:
    if positions is None or isinstance(positions, int) or positions == "answer":
        return
    if isinstance(positions, Tensor):
        if positions.dtype != torch.bool or positions.shape != batch.tokens.shape:
            raise DataError(
                f"a positions mask must be bool [batch, pos] like tokens {tuple(batch.tokens.shape)}"
            )
        return
    raise ConfigError(
        f"unknown positions {positions!r}; use None (all), 'answer', an int or a [batch, pos] mask"
    )


def _writer(cached: Tensor, batch: Batch, positions: Positions, dim: int, mask: Tensor | None):
    """A forward hook that writes the cached source activation into the target at ``positions``."""

    def hook(act: Tensor, hook) -> Tensor:  # noqa: ARG001
        if positions is None:
            return cached.to(act.dtype)
        out = act.clone()
        if isinstance(positions, int):
            out.select(dim, positions).copy_(cached.select(dim, positions))
            return out
        moved_out, moved_src = out.movedim(dim, 1), cached.movedim(dim, 1)
        if mask is not None:
            moved_out[mask] = moved_src[mask].to(act.dtype)
        else:
            rows = torch.arange(act.shape[0], device=act.device)
            moved_out[rows, batch.answer_pos] = select_positions(cached, batch, "answer", dim).to(act.dtype)
        return out

    return hook


def _run_patched(
    target: torch.nn.Module,
    batch: Batch,
    cache: dict[str, Tensor],
    positions: Positions,
    mask: Tensor | None,
) -> Tensor:
    fwd_hooks = [
        (name, _writer(cached, batch, positions, query_dim(target, name), mask))
        for name, cached in cache.items()
    ]
    with target.hooks(fwd_hooks=fwd_hooks):
        return target(batch.tokens)


def check_pair(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """A one-line ConfigError unless the two models share an architecture and a vocabulary size."""
    kinds = ["GAM" if isinstance(model, GAMModel) else "transformer" for model in (source, target)]
    if kinds[0] != kinds[1]:
        raise ConfigError(
            f"the two models differ in architecture ({kinds[0]} vs {kinds[1]}); compare models of one"
        )
    for field in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab"):
        a, b = getattr(source.cfg, field), getattr(target.cfg, field)
        if a != b:
            raise ConfigError(
                f"the two models differ in {field} ({a} vs {b}); compare models of one architecture and vocabulary"
            )


def _batch(data: Batch | EvalSet) -> Batch:
    batch = data.batch if isinstance(data, EvalSet) else data
    if len(batch) == 0:
        raise DataError("patching needs at least one sequence")
    return batch


@torch.no_grad()
def patched_logits(
    source: torch.nn.Module,
    target: torch.nn.Module,
    data: Batch | EvalSet,
    *,
    hook_names: Iterable[str],
    positions: Positions = None,
) -> Float[Tensor, "batch pos d_vocab"]:
    """The target's logits with every one of ``hook_names`` replaced by the source's activation."""
    check_pair(source, target)
    batch = _batch(data)
    _check_positions(positions, batch)
    names = check_hook_names(target, hook_names)
    batch = batch.to(model_device(target))
    with eval_mode(source, target):
        _, cache = source.run_with_cache(batch.tokens, names_filter=names)
        cache = {name: cache[name] for name in names}
        mask = positions if isinstance(positions, Tensor) else None
        return _run_patched(
            target, batch, cache, positions, None if mask is None else mask.to(batch.tokens.device)
        )


@dataclass(frozen=True)
class PatchResult:
    """The metric of the target with each hook patched from the source, beside both unpatched models."""

    metric: str
    positions: str
    source: float  # source model, unpatched
    target: float  # target model, unpatched
    patched: dict[str, float]  # hook name -> target with that hook patched from the source
    n_examples: int

    def restored(self) -> dict[str, float | None]:
        """(patched - target) / (source - target) per hook; None when the models agree."""
        gap = self.source - self.target
        return {k: (v - self.target) / gap if gap != 0 else None for k, v in self.patched.items()}

    def to_json(self) -> dict:
        return {
            "metric": self.metric,
            "positions": self.positions,
            "source": self.source,
            "target": self.target,
            "patched": self.patched,
            "restored": self.restored(),
            "n_examples": self.n_examples,
        }


@torch.no_grad()
def patch_across_models(
    source: torch.nn.Module,
    target: torch.nn.Module,
    data: Batch | EvalSet,
    *,
    hook_names: Iterable[str],
    metric: Metric = answer_accuracy,
    positions: Positions = None,
    batch_size: int = 256,
) -> PatchResult:
    """Patch each of ``hook_names`` (one at a time) from ``source`` into ``target``; the mean metric of each."""
    check_pair(source, target)
    batch = _batch(data)
    _check_positions(positions, batch)
    batch.check_vocab(target.cfg.d_vocab)
    names = check_hook_names(target, hook_names)
    check_hook_names(source, names)
    device = model_device(target)
    sums = {name: 0.0 for name in names}
    source_sum = target_sum = 0.0
    with eval_mode(source, target):
        start = 0
        for chunk in batch.chunks(batch_size):
            chunk = chunk.to(device)
            mask = None
            if isinstance(positions, Tensor):
                mask = positions[start : start + len(chunk)].to(device)
            start += len(chunk)
            source_logits, cache = source.run_with_cache(chunk.tokens, names_filter=names)
            source_sum += float(metric(source_logits, chunk).sum())
            target_sum += float(metric(target(chunk.tokens), chunk).sum())
            for name in names:
                logits = _run_patched(target, chunk, {name: cache[name]}, positions, mask)
                sums[name] += float(metric(logits, chunk).sum())
    n = len(batch)
    label = "all" if positions is None else ("mask" if isinstance(positions, Tensor) else str(positions))
    return PatchResult(
        metric=getattr(metric, "__name__", type(metric).__name__),
        positions=label,
        source=source_sum / n,
        target=target_sum / n,
        patched={name: value / n for name, value in sums.items()},
        n_examples=n,
    )
