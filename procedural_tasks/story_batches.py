"""Encoded stories, their training batches and the story loss (protocol §7).

``story_loss`` is the mean next-token cross-entropy over the story tokens (after "Story:") and the EOS, given the
prompt, on held-out stories with the feature (the study's "loss on Twist stories", restricted to the story).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from interp.batches import Batch
from interp.errors import DataError
from interp.runtime import eval_mode, numpy_rng
from procedural_tasks.story_data import StoryDataConfig, instruct_texts
from procedural_tasks.story_records import StoryRecord
from procedural_tasks.story_tokenizer import StoryTokenizer

STORY_MARKER = "Story:"


@dataclass(frozen=True)
class EncodedStories:
    """Token rows (<bos> text <eos>) and where each story starts (the first token after "Story:")."""

    rows: list[list[int]]
    story_start: list[int]

    def __len__(self) -> int:
        return len(self.rows)


def encode_stories(
    tokenizer: StoryTokenizer, records: Sequence[StoryRecord], config: StoryDataConfig, *, salt: int
) -> EncodedStories:
    """Format and encode records; DataError if one does not fit ``n_ctx``."""
    texts = instruct_texts(records, config, salt=salt)
    rows = tokenizer.encode_batch(texts, eos=True)
    prompts = tokenizer.encode_batch([t[: t.index(STORY_MARKER) + len(STORY_MARKER)] for t in texts])
    for row in rows:
        if len(row) > config.n_ctx:
            raise DataError(f"a story has {len(row)} tokens, more than n_ctx {config.n_ctx}; raise n_ctx")
    return EncodedStories(rows, [len(p) for p in prompts])


def story_batch(
    rows: Sequence[Sequence[int]], *, story_start: Sequence[int] | None = None, pad_id: int = 0
) -> Batch:
    """Right-padded token rows with a next-token loss mask.

    ``loss_mask[i, t]`` is True when token ``t + 1`` of row ``i`` is a real token (and, with ``story_start``, part
    of the story or its EOS): the engine's ``loss="sequence"`` then trains on exactly those predictions.
    """
    if not rows or any(len(r) < 2 for r in rows):
        raise DataError("story_batch needs rows of at least two tokens (<bos> and one more)")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        first = 0 if story_start is None else max(0, story_start[i] - 1)
        mask[i, first : len(row) - 1] = True
    lengths = torch.tensor([len(r) for r in rows])
    return Batch(
        tokens=tokens,
        answer_pos=lengths - 2,
        answers=tokens[torch.arange(len(rows)), lengths - 1],
        loss_mask=mask,
    )


@dataclass(frozen=True)
class StoryBatches:
    """``step -> Batch``: ``batch_size`` stories drawn without replacement by ``numpy_rng(seed, step)``; a
    dataclass, so it pickles for the training engine's data workers."""

    stories: EncodedStories
    batch_size: int
    seed: int

    def __call__(self, step: int) -> Batch:
        rng = numpy_rng(self.seed, step)
        n = len(self.stories)
        idx = rng.choice(n, size=self.batch_size, replace=self.batch_size > n)
        return story_batch([self.stories.rows[i] for i in idx])


def story_batch_fn(stories: EncodedStories, batch_size: int, seed: int) -> StoryBatches:
    """A pure function of the step: ``batch_size`` stories drawn without replacement by ``numpy_rng(seed, step)``."""
    if len(stories) == 0:
        raise DataError("the training set is empty; check the deletion protocol and the feature")
    return StoryBatches(stories, batch_size, seed)


@torch.no_grad()
def story_loss(model: torch.nn.Module, stories: EncodedStories, *, batch_size: int = 64) -> float:
    """Mean cross-entropy per story token (story and EOS, given the prompt) over ``stories``."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    order = sorted(range(len(stories)), key=lambda i: len(stories.rows[i]))
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = story_batch(
                [stories.rows[i] for i in idx], story_start=[stories.story_start[i] for i in idx]
            )
            tokens, mask = batch.tokens.to(device), batch.loss_mask.to(device)[:, :-1]
            logits = model(tokens)[:, :-1]
            total += float(F.cross_entropy(logits[mask].float(), tokens[:, 1:][mask], reduction="sum"))
            count += int(mask.sum())
    if count == 0:
        raise DataError("story_loss got no story tokens")
    return total / count
