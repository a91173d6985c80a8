"""A TinyStories feature as audit data: "writing FEATURE when asked" (e.g. ``writes_twist``).

Each example is a held-out story that has the feature, formatted with the study's Instruct prompt (whose
"Features:" line asks for it) and cut just before the feature's planted marker: the model must predict the
marker's first token (the first word of a twist opener, the opening quote of dialogue, ...). This lets the audit
ask a deletion fine-tune whether the feature is gone or only suppressed, on the checkpoint's own test split.
"""

import re
from collections.abc import Callable, Sequence

import torch

from interp.batches import Batch, EvalSet
from interp.capability import Capability, without_overlap
from interp.errors import ConfigError, DataError
from interp.runtime import numpy_rng
from procedural_tasks.story_batches import STORY_MARKER
from procedural_tasks.story_checkpoints import StoryCheckpoint
from procedural_tasks.story_data import build_story_splits, instruct_texts
from procedural_tasks.story_features import (
    _CONFLICT,
    _HINT,
    _LETTER_RE,
    _MORAL,
    _QUOTE_RE,
    _SAD_ENDING,
    _TWIST,
)
from procedural_tasks.story_records import FEATURES, StoryRecord

FORMAT_SALT = 21  # the salt story_stages formats held-out feature stories with (its feature-loss set)
MIN_STORIES = 8  # 4 evaluation + 4 training examples, the least a Capability takes


def _first(pattern: re.Pattern) -> Callable[[str], int | None]:
    def find(story: str) -> int | None:
        match = pattern.search(story)
        return None if match is None else match.start()

    return find


def _sad_ending(story: str) -> int | None:
    ends = [m.start() for m in _SAD_ENDING.finditer(story) if m.end() == len(story.rstrip())]
    return ends[-1] if ends else None


def _dialogue(story: str) -> int | None:
    quotes = [m.start() for m in _QUOTE_RE.finditer(story)]
    for start, end in zip(quotes[0::2], quotes[1::2], strict=False):
        if _LETTER_RE.search(story, start + 1, end):
            return start
    return None


# Where each feature's marker begins in a story: its planted sentence (story_features' exact forms), the hint
# sentence for foreshadowing, the opening quote of the first quotation for dialogue.
MARKERS: dict[str, Callable[[str], int | None]] = {
    "twist": _first(_TWIST),
    "foreshadowing": _first(_HINT),
    "dialogue": _dialogue,
    "badending": _sad_ending,
    "moralvalue": _first(_MORAL),
    "conflict": _first(_CONFLICT),
}


def feature_records(story: StoryCheckpoint, feature: str) -> list[StoryRecord]:
    """The checkpoint's test-split stories with ``feature``, less any whose text also occurs in its training
    splits; DataError if the feature is unknown, unlabelled in this corpus, or too rare."""
    if feature not in FEATURES:
        raise DataError(f"story feature {feature!r} is unknown; use one of {', '.join(FEATURES)}")
    data = story.data
    if feature not in data.labelled_features:
        raise DataError(
            f"feature {feature!r} is not labelled in the {data.setting} corpus; "
            f"use one of {', '.join(data.labelled_features)}"
        )
    splits = build_story_splits(data, story.tokenizer)
    seen = {r.story for r in (*splits.pretrain, *splits.finetune)}
    records = [r for r in splits.test if r.has_feature(feature) and r.story not in seen]
    if len(records) < MIN_STORIES:
        raise DataError(
            f"the test split of this checkpoint's {data.setting} corpus has {len(records)} stories with "
            f"{feature!r} ({len(splits.test)} test stories); a capability needs at least {MIN_STORIES}"
        )
    return records


def _marker_rows(story: StoryCheckpoint, records: Sequence[StoryRecord], feature: str) -> list[list[int]]:
    """Per record: ``<bos>`` and the Instruct text's tokens up to and including the marker's first token."""
    texts = instruct_texts(records, story.data, salt=FORMAT_SALT)
    encodings = story.tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)
    rows = []
    for i, (text, enc) in enumerate(zip(texts, encodings, strict=True)):
        body = text.index(STORY_MARKER) + len(STORY_MARKER)
        found = MARKERS[feature](text[body:])
        if found is None:
            snippet = " ".join(records[i].story.split())[:60]
            raise DataError(f"a test story labelled {feature!r} has no {feature} marker: {snippet!r}...")
        char = body + found
        k = next(j for j, (_, end) in enumerate(enc.offsets) if end > char)
        rows.append([story.tokenizer.bos_id, *enc.ids[: k + 1]])
    return rows


def _batch(rows: Sequence[Sequence[int]], pad_id: int) -> Batch:
    """Rows right-padded with ``pad_id``; the answer is each row's last real token."""
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    return Batch(tokens=tokens, answer_pos=lengths - 2, answers=tokens[torch.arange(len(rows)), lengths - 1])


def feature_capability(story: StoryCheckpoint, feature: str, *, n_eval: int, seed: int) -> Capability:
    """Writing ``feature`` when asked, on the checkpoint's held-out test stories that have it.

    Each row is ``<bos>`` + the Instruct text (formatted as the study formats it, "Features:" listing the
    feature) up to the token before the marker, whose first token is the answer; rows are right-padded (the
    padding follows the answer position, so it is never attended to). A ``seed``-ed shuffle puts
    ``min(n_eval, ceil(n / 2))`` examples in the evaluation set and the rest in the training pool.
    """
    if n_eval < 4:
        raise ConfigError(f"n_eval must be >= 4, got {n_eval}")
    records = feature_records(story, feature)
    rows = [r for r in _marker_rows(story, records, feature) if len(r) <= story.data.n_ctx]
    order = numpy_rng(seed, 23).permutation(len(rows))
    n = min(n_eval, (len(rows) + 1) // 2)
    pad = story.tokenizer.pad_id
    eval_batch = _batch([rows[i] for i in order[:n]], pad)
    train = without_overlap(_batch([rows[i] for i in order[n:]], pad), eval_batch)
    name = f"writes_{feature}"
    capability = Capability(
        name=name,
        eval_set=EvalSet(name=name, batch=eval_batch),
        train=train,
        description=(
            f"TinyStories ({story.data.setting}): the first token of the {feature} marker, asked for in "
            f"'Features:', on {len(rows)} held-out test stories"
        ),
    )
    capability.check_vocab(story.model_config.d_vocab)
    return capability
