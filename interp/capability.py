"""A capability is data: what the audit asks a model pair about.

A ``Capability`` holds an evaluation set (tokens, answer positions, answers, optional per-sequence probe
labels), a disjoint pool of training examples for relearning and for scoring pruning units, and the chance
floor. Task packages build one for their tasks (PCFG counting, a Tracr program, a TinyStories feature);
``capability_from_jsonl`` builds one from (prompt, answer) pairs for any tokenizer-backed model.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.evaluation import majority_floor
from interp.runtime import torch_generator


@dataclass(frozen=True)
class Capability:
    """One audited capability: ``eval_set`` measures it, ``train`` (disjoint from it) relearns it and scores
    pruning units; ``probe_label`` names a label of both batches that a linear probe should read."""

    name: str
    eval_set: EvalSet
    train: Batch
    probe_label: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.eval_set.batch) < 4 or len(self.train) < 4:
            raise DataError(
                f"capability '{self.name}' needs at least 4 evaluation and 4 training examples, "
                f"got {len(self.eval_set.batch)} and {len(self.train)}"
            )
        for what, batch in (("evaluation", self.eval_set.batch), ("training", self.train)):
            if self.probe_label is not None and self.probe_label not in batch.labels:
                raise DataError(
                    f"capability '{self.name}': the {what} set has no probe label '{self.probe_label}'"
                )
        overlap = _rows(self.eval_set.batch) & _rows(self.train)
        if overlap:
            raise DataError(
                f"capability '{self.name}': {len(overlap)} training examples also occur in the evaluation set; "
                "relearning must not see the examples it is scored on"
            )

    @property
    def chance_floor(self) -> float:
        """Accuracy of always giving the evaluation set's most common answer."""
        return majority_floor(self.eval_set.batch.answers)

    def check_vocab(self, d_vocab: int) -> None:
        """A one-line ``DataError`` when a token is outside a model's vocabulary."""
        self.eval_set.batch.check_vocab(d_vocab)
        self.train.check_vocab(d_vocab)

    def split_eval(self) -> tuple[EvalSet, EvalSet]:
        """Two disjoint halves of the evaluation set (even and odd rows): one to choose on, one to report."""
        halves = []
        for part, start in (("select", 0), ("report", 1)):
            index = torch.arange(start, len(self.eval_set.batch), 2)
            shortcut = self.eval_set.shortcut_answers
            halves.append(
                EvalSet(
                    name=f"{self.eval_set.name}:{part}",
                    batch=_take(self.eval_set.batch, index),
                    shortcut_answers=None if shortcut is None else shortcut[index],
                )
            )
        return halves[0], halves[1]

    def train_batches(self, batch_size: int, seed: int) -> Callable[[int], Batch]:
        """``step -> Batch``: examples drawn from the training pool with replacement, a pure function of
        (seed, step) so a resumed run sees the same data."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")

        def batch(step: int) -> Batch:
            gen = torch_generator(seed * 1_000_003 + step)
            return _take(self.train, torch.randint(len(self.train), (batch_size,), generator=gen))

        return batch


def _take(batch: Batch, index: torch.Tensor) -> Batch:
    return Batch(
        tokens=batch.tokens[index],
        answer_pos=batch.answer_pos[index],
        answers=batch.answers[index],
        loss_mask=None if batch.loss_mask is None else batch.loss_mask[index],
        labels={k: v[index] for k, v in batch.labels.items()},
    )


def without_overlap(train: Batch, eval_batch: Batch) -> Batch:
    """``train`` less every example that also occurs in ``eval_batch`` (for constructors whose pools are
    sampled independently and may collide by chance)."""
    seen = _rows(eval_batch)
    keep = [i for i, row in enumerate(_row_list(train)) if row not in seen]
    return _take(train, torch.tensor(keep, dtype=torch.long))


def _row_list(batch: Batch) -> list[tuple[int, ...]]:
    return [
        (*batch.tokens[i, : int(batch.answer_pos[i]) + 1].tolist(), int(batch.answers[i]))
        for i in range(len(batch))
    ]


def _rows(batch: Batch) -> set[tuple[int, ...]]:
    """Each example as (tokens up to its answer position, answer): what the model sees and must say."""
    return set(_row_list(batch))


def _pairs_batch(pairs: Sequence[tuple[list[int], int]], pad_id: int) -> Batch:
    width = max(len(p) for p, _ in pairs)
    tokens = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    for i, (prompt, _) in enumerate(pairs):
        tokens[i, : len(prompt)] = torch.tensor(prompt)
    return Batch(
        tokens=tokens,
        answer_pos=torch.tensor([len(p) - 1 for p, _ in pairs]),
        answers=torch.tensor([a for _, a in pairs]),
    )


def capability_from_jsonl(
    path: str | Path,
    encode_prompt: Callable[[str], Sequence[int]],
    encode_answer: Callable[[str], Sequence[int]],
    *,
    name: str | None = None,
    eval_frac: float = 0.5,
    seed: int = 0,
    pad_id: int = 0,
) -> Capability:
    """A capability from a JSONL file of ``{"prompt": ..., "answer": ...}`` lines.

    The model is scored on the first token of ``encode_answer(answer)`` after ``encode_prompt(prompt)`` (a
    tokenizer's encoder with and without its special tokens; write the answer with the space it follows, e.g.
    ``" Paris"``). Prompts are right-padded with ``pad_id`` (the answer position is each
    prompt's last token, so padding is never attended to). Duplicate examples are dropped; a seeded shuffle
    puts ``eval_frac`` of them in the evaluation set and the rest in the training pool.
    """
    if not 0 < eval_frac < 1:
        raise ConfigError(f"eval_frac must be in (0, 1), got {eval_frac}")
    path = Path(path)
    pairs: dict[tuple[int, ...], tuple[list[int], int]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt = [int(i) for i in encode_prompt(row["prompt"])]
            answer = [int(i) for i in encode_answer(row["answer"])]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f'{path}:{number}: expected a JSON object with "prompt" and "answer" strings ({exc})'
            ) from None
        if not prompt or not answer:
            raise DataError(f"{path}:{number}: the prompt and the answer must each encode to >= 1 token")
        pairs[(*prompt, answer[0])] = (prompt, answer[0])
    unique = list(pairs.values())
    order = torch.randperm(len(unique), generator=torch_generator(seed)).tolist()
    n_eval = round(len(unique) * eval_frac)
    eval_pairs = [unique[i] for i in order[:n_eval]]
    train_pairs = [unique[i] for i in order[n_eval:]]
    if len(eval_pairs) < 4 or len(train_pairs) < 4:
        raise DataError(f"{path} has {len(unique)} distinct examples; a capability needs at least 8")
    label = name or path.stem
    return Capability(
        name=label,
        eval_set=EvalSet(name=label, batch=_pairs_batch(eval_pairs, pad_id)),
        train=_pairs_batch(train_pairs, pad_id),
        description=f"{len(unique)} (prompt, answer) pairs from {path.name}",
    )
