"""Instruct formatting of story records (protocol §7.1): shuffled "Words:", "Features:", "Summary:" and
"Sentence:" lines, then "Story:" and the story."""

import re
from collections.abc import Iterable, Sequence

import numpy as np

from interp.errors import ConfigError
from procedural_tasks.story_records import INSTRUCT_FIELDS, QUOTE_CHARS, StoryRecord, feature_display_name

_SENTENCE_PIECE = re.compile(r"[^.!?]+")


def quoted_mask(text: str) -> np.ndarray:
    """Boolean mask of the characters inside a quotation or that are quote marks (quote marks paired in order)."""
    mask = np.zeros(len(text), dtype=bool)
    positions = [i for i, c in enumerate(text) if c in QUOTE_CHARS]
    for i in positions:
        mask[i] = True
    for start, end in zip(positions[0::2], positions[1::2], strict=False):
        mask[start : end + 1] = True
    if len(positions) % 2:
        mask[positions[-1] :] = True
    return mask


def candidate_sentences(story: str) -> list[str]:
    """Sentences the "Sentence:" line may use: pieces between . ! ? with no quoted character, newlines removed.

    The study splits on . ! ? and drops pieces holding a straight quote; we also drop pieces inside a longer
    quotation, curly quotes, and empty pieces (the study could pick the empty piece after the last full stop).
    """
    mask = quoted_mask(story)
    out = []
    for match in _SENTENCE_PIECE.finditer(story):
        if mask[match.start() : match.end()].any():
            continue
        piece = match.group().replace("\n", " ").strip()
        if any(c.isalpha() for c in piece):
            out.append(piece)
    return out


def pick_sentence(story: str, rng: np.random.Generator) -> str | None:
    """A random non-quoted sentence of the story, without its final punctuation; None if there is none."""
    sentences = candidate_sentences(story)
    return sentences[int(rng.integers(len(sentences)))] if sentences else None


def instruct_lines(
    record: StoryRecord, *, rng: np.random.Generator, fields: Sequence[str] = INSTRUCT_FIELDS
) -> list[str]:
    """The shuffled instruction lines ("Words: …", "Features: …", "Summary: …", "Sentence: …").

    A line is left out when its metadata is absent: no words, no summary, no usable sentence, or no labelled
    feature. A record whose features are labelled but absent gets "Features: " with nothing after it, as in the study.
    """
    unknown = [f for f in fields if f not in INSTRUCT_FIELDS]
    if unknown:
        raise ConfigError(f"fields {unknown} are not Instruct lines; use a subset of {INSTRUCT_FIELDS}")
    lines = []
    for field in INSTRUCT_FIELDS:
        if field not in fields:
            continue
        if field == "words" and record.words:
            lines.append("Words: " + ", ".join(record.words))
        elif field == "features" and (record.known_features or record.instruction_features is not None):
            lines.append("Features: " + ", ".join(feature_display_name(f) for f in record.prompt_features))
        elif field == "summary" and record.summary:
            lines.append("Summary: " + record.summary.replace("\n", " ").strip())
        elif field == "sentence":
            sentence = record.sentence if record.sentence is not None else pick_sentence(record.story, rng)
            if sentence:
                lines.append("Sentence: " + sentence)
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def format_instruct_prompt(
    record: StoryRecord, *, rng: np.random.Generator, fields: Sequence[str] = INSTRUCT_FIELDS
) -> str:
    """The instruction prefix up to and including "Story: " (the generation prompt of protocol §7.5)."""
    return "\n".join([*instruct_lines(record, rng=rng, fields=fields), "Story: "])


def format_instruct(
    record: StoryRecord, *, rng: np.random.Generator, fields: Sequence[str] = INSTRUCT_FIELDS
) -> str:
    """The full Instruct text: shuffled instruction lines, then "Story: <story>" last."""
    return (format_instruct_prompt(record, rng=rng, fields=fields) + record.story.strip()).strip()


def format_instruct_texts(
    records: Iterable[StoryRecord], *, seed: int = 0, fields: Sequence[str] = INSTRUCT_FIELDS
) -> list[str]:
    """Format many records with one Generator seeded by `seed` (same seed and order, same texts)."""
    rng = np.random.default_rng(seed)
    return [format_instruct(r, rng=rng, fields=fields) for r in records]
