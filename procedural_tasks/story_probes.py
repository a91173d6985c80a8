"""Probe data of the TinyStories study (protocol §5.2): stories without instructions, probed per block."""

from collections.abc import Sequence

import torch

from interp import hooks
from interp.batches import Batch
from interp.errors import DataError
from interp.probing import ProbeConfig, ProbeLayersResult, probe_layers
from interp.runtime import numpy_rng
from procedural_tasks.story_records import StoryRecord
from procedural_tasks.story_tokenizer import StoryTokenizer

PROBE_POSITION = "mean_last_10"


def probe_batch(
    tokenizer: StoryTokenizer,
    records: Sequence[StoryRecord],
    features: Sequence[str],
    *,
    n_ctx: int,
    seed: int = 0,
) -> Batch:
    """Stories without instructions, as the study's probe input: ``<bos> story``, left-filled to one length.

    Rows are left-filled with the tail of other stories' tokens (the study pads with "story text from other batch
    items"), so all rows end at the last position and ``mean_last_10`` averages each story's own last 10 tokens.
    Stories longer than ``n_ctx`` keep their first ``n_ctx`` tokens. ``labels["features"]`` is [example,
    n_features] in {0, 1}, in the order of ``features``.
    """
    if not records:
        raise DataError("probe_batch needs at least one story")
    rows = [r[:n_ctx] for r in tokenizer.encode_batch([r.story for r in records])]
    width = max(len(r) for r in rows)
    if width < 10:
        raise DataError(f"probe stories have at most {width} tokens; mean_last_10 needs 10")
    filler = [t for r in rows for t in r[1:]]
    order = numpy_rng(seed, 5).integers(0, max(1, len(filler)), size=len(rows))
    tokens = torch.empty((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        need = width - len(row)
        start = int(order[i])
        fill = (filler[start:] + filler[:start])[:need] if need else []
        fill = fill + [tokenizer.pad_id] * (need - len(fill))
        tokens[i] = torch.tensor(fill + row, dtype=torch.long)
    labels = torch.tensor([[int(f in r.features) for f in features] for r in records], dtype=torch.long)
    return Batch(
        tokens=tokens,
        answer_pos=torch.full((len(rows),), width - 1, dtype=torch.long),
        answers=tokens[:, -1].clone(),
        labels={"features": labels},
    )


def study_probe_config(*, steps: int = 2000, seed: int = 0) -> ProbeConfig:
    """The study's TinyStories probe: bias-free linear layer, multi-label BCE, AdamW LR 1e-3 constant, wd 0.1."""
    return ProbeConfig(
        steps=steps,
        lr=1e-3,
        weight_decay=0.1,
        decay_at=(),
        batch_size=128,
        multilabel=True,
        bias=False,
        seed=seed,
    )


def feature_probes(
    model: torch.nn.Module, batch: Batch, *, config: ProbeConfig | None = None
) -> ProbeLayersResult:
    """A probe per residual-stream site (embedding output B0, then each block) on the mean of the last 10 positions."""
    return probe_layers(
        model,
        batch,
        hook_names=hooks.residual_stream(model.cfg.n_layers),
        label="features",
        position=PROBE_POSITION,
        config=config or study_probe_config(),
        batch_size=64,
    )
