"""Streamed activation collection: a few hook points, one kept position, memory bounded by the batch.

Probing a whole data set needs one vector per example per hook point, not the full
[example, pos, d] cache of every hook. ``collect_activations`` registers forward hooks only on the
requested names, runs the model batch by batch (stopping after the last block it needs), and inside
each hook keeps only the requested position before moving the slice to the CPU. Peak memory is one
batch's forward pass plus the kept [example, d] arrays, which are allocated once when the number of
examples is known.

Positions (``position=``):
- ``None``: every position, [example, pos, d] (only for small sets);
- ``"answer"``: ``Batch.answer_pos`` of each sequence (the study's ART position); ``"answer+1"`` the
  answer token itself (Ans), and any ``"answer+K"`` / ``"answer-K"``;
- an ``int``: that position in every sequence (negative counts from the end);
- ``"mean_last_N"``: the mean over the last N positions (the study's TinyStories probe input, N=10).

Attention patterns ([batch, head_index, query_pos, key_pos]) are selected on the query position.
"""

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from torch import Tensor

from interp import hooks
from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.models import model_device
from interp.runtime import eval_mode

Position = int | str | None
Data = Batch | EvalSet | Iterable[Batch | EvalSet]

_ANSWER = re.compile(r"^answer(?:([+-])(\d+))?$")
_MEAN_LAST = re.compile(r"^mean_last_(\d+)$")
_LAYER = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class ActivationResult:
    """Kept activations per hook name ([example, ...]) with the labels and answers of the examples."""

    activations: dict[str, Tensor]
    position: Position
    labels: dict[str, Tensor] = field(default_factory=dict)
    answers: Int[Tensor, " example"] | None = None

    def __getitem__(self, hook_name: str) -> Tensor:
        if hook_name not in self.activations:
            raise KeyError(f"no activations for '{hook_name}'; collected {list(self.activations)}")
        return self.activations[hook_name]

    @property
    def n_examples(self) -> int:
        return next(iter(self.activations.values())).shape[0] if self.activations else 0

    def to_json(self) -> dict:
        return {
            "position": self.position,
            "n_examples": self.n_examples,
            "shapes": {name: list(t.shape) for name, t in self.activations.items()},
            "labels": sorted(self.labels),
        }


def check_position(position: Position) -> None:
    """Raise ConfigError unless ``position`` is one of the documented forms."""
    if position is None or isinstance(position, int):
        return
    if isinstance(position, str) and (_ANSWER.match(position) or _MEAN_LAST.match(position)):
        if (m := _MEAN_LAST.match(position)) and int(m.group(1)) < 1:
            raise ConfigError(f"position '{position}' must average at least one position")
        return
    raise ConfigError(
        f"unknown position {position!r}; use None, an int, 'answer', 'answer+1' or 'mean_last_10'"
    )


def _as_batches(data: Data) -> list[Batch] | Iterator[Batch]:
    if isinstance(data, Batch):
        return [data]
    if isinstance(data, EvalSet):
        return [data.batch]
    if isinstance(data, (list, tuple)):
        return [d.batch if isinstance(d, EvalSet) else d for d in data]
    return (d.batch if isinstance(d, EvalSet) else d for d in data)


def check_hook_names(model: torch.nn.Module, hook_names: Iterable[str]) -> list[str]:
    """The names as a list; unknown names are a ConfigError that suggests the nearest one."""
    import difflib

    names = list(hook_names)
    if not names:
        raise ConfigError("hook_names is empty; pass e.g. hook_names=hooks.residual_stream(n_layers)")
    available = model.hook_dict
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, list(available), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"model has no hook point '{name}'{hint} (build names with interp.hooks)")
    return names


def query_dim(model: torch.nn.Module, hook_name: str) -> int:
    """The axis that indexes sequence positions in this hook's activation (query_pos for patterns)."""
    patterns = {hooks.attn_pattern(layer) for layer in range(model.cfg.n_layers)}
    return 2 if hook_name in patterns else 1


def stop_layer(model: torch.nn.Module, hook_names: Iterable[str]) -> int | None:
    """The block after the last one any of ``hook_names`` lives in (None: run the whole model)."""
    layers = []
    for name in hook_names:
        m = _LAYER.match(name)
        if m is None:
            if name in (hooks.EMBED, hooks.POS_EMBED):
                layers.append(0)
                continue
            return None
        layers.append(int(m.group(1)))
    last = max(layers) + 1
    return None if last >= model.cfg.n_layers else last


def select_positions(act: Tensor, batch: Batch, position: Position, dim: int = 1) -> Tensor:
    """Keep ``position`` of ``act`` along ``dim`` (the activation's position axis)."""
    if position is None:
        return act
    n_pos = act.shape[dim]
    if isinstance(position, int):
        if not -n_pos <= position < n_pos:
            raise DataError(f"position {position} is outside sequences of length {n_pos}")
        return act.select(dim, position)
    if m := _MEAN_LAST.match(position):
        n = int(m.group(1))
        if n > n_pos:
            raise DataError(f"position '{position}' needs {n} positions, sequences have {n_pos}")
        return act.narrow(dim, n_pos - n, n).mean(dim)
    m = _ANSWER.match(position)
    if m is None:
        check_position(position)
    offset = 0 if m.group(1) is None else int(m.group(2)) * (1 if m.group(1) == "+" else -1)
    pos = batch.answer_pos.to(act.device) + offset
    if bool(((pos < 0) | (pos >= n_pos)).any()):
        raise DataError(f"position '{position}' falls outside sequences of length {n_pos}")
    moved = act.movedim(dim, 1)
    return moved[torch.arange(act.shape[0], device=act.device), pos]


class _Collector:
    """Gathers each hook's activations at ``position`` on the CPU, with the labels and answers: into one
    tensor per hook when the number of examples (``total``) is known, else chunk by chunk."""

    def __init__(self, position: Position, dims: dict[str, int], total: int | None) -> None:
        self.position, self.dims, self.total = position, dims, total
        self.kept: dict[str, list[Tensor]] = {name: [] for name in dims}
        self.out: dict[str, Tensor] = {}
        self.labels: dict[str, list[Tensor]] = {}
        self.answers: list[Tensor] = []
        self.cursor = 0
        self.chunk: Batch | None = None

    def hook(self, name: str) -> Callable:
        """The forward hook that stores ``name``'s activations of the current chunk."""

        def hook(act: Tensor, hook) -> None:  # noqa: ARG001
            chunk = self.chunk
            value = (
                select_positions(act, chunk, self.position, self.dims[name]).detach().to("cpu", torch.float32)
            )
            if self.total is None:
                self.kept[name].append(value.clone())
                return
            if name not in self.out:
                self.out[name] = torch.empty((self.total, *value.shape[1:]), dtype=torch.float32)
            self.out[name][self.cursor : self.cursor + len(chunk)] = value

        return hook

    def run(self, model: torch.nn.Module, chunk: Batch, device: torch.device, stop: int | None) -> None:
        """Run ``model`` on ``chunk`` (up to layer ``stop``), keeping its activations, labels and answers."""
        self.chunk = chunk.to(device)
        model(self.chunk.tokens, stop_at_layer=stop)
        self.cursor += len(chunk)
        for key, value in chunk.labels.items():
            self.labels.setdefault(key, []).append(value.cpu())
        self.answers.append(chunk.answers.cpu())

    def result(self, names: list[str]) -> ActivationResult:
        if self.cursor == 0:
            raise DataError("collect_activations got no examples")
        out = self.out if self.total is not None else {name: torch.cat(v) for name, v in self.kept.items()}
        return ActivationResult(
            activations={name: out[name] for name in names},
            position=self.position,
            labels={k: torch.cat(v) for k, v in self.labels.items()},
            answers=torch.cat(self.answers),
        )


@torch.no_grad()
def collect_activations(
    model: torch.nn.Module,
    data: Data,
    *,
    hook_names: Iterable[str],
    position: Position = "answer",
    batch_size: int = 256,
) -> ActivationResult:
    """Activations of ``hook_names`` at ``position`` for every example of ``data``, on the CPU.

    Returns [example, d] per hook (or [example, pos, d] with ``position=None``; attention patterns give
    [example, head_index, key_pos]). The model is run in eval mode and left as it was.
    """
    check_position(position)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    names = check_hook_names(model, hook_names)
    batches = _as_batches(data)
    total = sum(len(b) for b in batches) if isinstance(batches, list) else None
    device = model_device(model)
    stop = stop_layer(model, names)
    collector = _Collector(position, {name: query_dim(model, name) for name in names}, total)
    with eval_mode(model):
        with model.hooks(fwd_hooks=[(name, collector.hook(name)) for name in names]):
            for batch in batches:
                batch.check_vocab(model.cfg.d_vocab)
                for chunk in batch.chunks(batch_size):
                    collector.run(model, chunk, device, stop)
    return collector.result(names)
