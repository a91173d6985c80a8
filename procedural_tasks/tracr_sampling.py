"""Seeded inputs for the compiled programs, with the study's spurious correlation (paper Tab. 2, C_Tr and q).

With probability c_tr a sample is replaced by a draw from the uniform distribution over inputs that satisfy
r(x, O_FT) - r(x, O_PT) = q, where r is the program's answer. For Max-identifier r is the letter's index in
the vocabulary order, so the O_FT-th largest letter sits q places after the O_PT-th largest (q = 1,
O_FT = 6: "a+1"). Conditioning, rather than editing letters in place, keeps every other feature of an
edited sample uniform given the constraint.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from interp.errors import ConfigError
from procedural_tasks.tracr_programs import (
    CounterConfig,
    MaxIdentifierConfig,
    ProgramConfig,
    encode,
    label_ids,
    reference_output,
)


def _sample_counter_uniform(
    config: CounterConfig, n: int, n_letters: int, rng: np.random.Generator
) -> np.ndarray:
    vocab = np.array(config.vocab)
    return vocab[rng.integers(0, len(vocab), size=(n, n_letters))]


def _sample_counter_correlated(
    config: CounterConfig, n_letters: int, operand_ft: str, q: int, rng: np.random.Generator
) -> np.ndarray:
    """One input drawn uniformly among those with count(operand_ft) = count(operand_pt) + q."""
    others = [letter for letter in config.vocab if letter not in (config.operand_pt, operand_ft)]
    counts_pt = list(range(max(0, -q), (n_letters - q) // 2 + 1))
    weights = [
        math.comb(n_letters, k) * math.comb(n_letters - k, k + q) * len(others) ** (n_letters - 2 * k - q)
        for k in counts_pt
    ]
    total = sum(weights)
    k = counts_pt[rng.choice(len(counts_pt), p=[w / total for w in weights])]
    row = np.empty(n_letters, dtype=np.array(config.vocab).dtype)
    positions = rng.permutation(n_letters)
    row[positions[:k]] = config.operand_pt
    row[positions[k : 2 * k + q]] = operand_ft
    rest = positions[2 * k + q :]
    if len(rest):
        row[rest] = np.array(others)[rng.integers(0, len(others), size=len(rest))]
    return row


def _sample_max_identifier_uniform(
    config: MaxIdentifierConfig, n: int, n_letters: int, rng: np.random.Generator
) -> np.ndarray:
    vocab = np.array(config.vocab)
    return vocab[rng.random((n, len(vocab))).argsort(axis=1)[:, :n_letters]]


def _sample_max_identifier_correlated(
    config: MaxIdentifierConfig, n_letters: int, operand_ft: int, q: int, rng: np.random.Generator
) -> np.ndarray:
    """One input drawn uniformly among those whose operand_ft-th largest letter is q places after the
    operand_pt-th largest in the vocabulary order (q < 0 when operand_ft < operand_pt)."""
    lo, hi = sorted((config.operand_pt, operand_ft))
    gap, between = abs(q), hi - lo - 1
    size = len(config.vocab)
    # u = vocabulary index of the rank-lo letter; the rank-hi letter is at u + gap.
    anchors = list(range(lo - 1, size - gap - (n_letters - hi)))
    weights = [
        math.comb(u, lo - 1) * math.comb(gap - 1, between) * math.comb(size - 1 - u - gap, n_letters - hi)
        for u in anchors
    ]
    total = sum(weights)
    u = anchors[rng.choice(len(anchors), p=[w / total for w in weights])]
    above = rng.choice(u, size=lo - 1, replace=False) if lo > 1 else np.empty(0, dtype=np.int64)
    middle = (
        u + 1 + rng.choice(gap - 1, size=between, replace=False) if between else np.empty(0, dtype=np.int64)
    )
    below_pool = np.arange(u + gap + 1, size)
    below = rng.choice(below_pool, size=n_letters - hi, replace=False)
    indices = np.concatenate([above, [u], middle, [u + gap], below]).astype(np.int64)
    return np.array(config.vocab)[rng.permutation(indices)]


def _check_operand_ft(config: ProgramConfig, n_letters: int, operand_ft: str | int) -> None:
    if isinstance(config, CounterConfig):
        if operand_ft not in config.vocab or operand_ft == config.operand_pt:
            raise ConfigError(
                f"operand_ft {operand_ft!r} must be a letter of {''.join(config.vocab)} other than "
                f"operand_pt {config.operand_pt!r}, e.g. {config.default_operand_ft!r}"
            )
    elif (
        not isinstance(operand_ft, int) or not 1 <= operand_ft <= n_letters or operand_ft == config.operand_pt
    ):
        raise ConfigError(
            f"operand_ft {operand_ft!r} must be an order in 1..{n_letters} other than operand_pt {config.operand_pt}"
        )


def _check_q(config: ProgramConfig, n_letters: int, operand_ft: str | int, q: int) -> None:
    """Raise ConfigError unless some input of n_letters letters satisfies r(x, O_FT) - r(x, O_PT) = q."""
    if isinstance(config, CounterConfig):
        if abs(q) > n_letters or (len(config.vocab) == 2 and (n_letters - q) % 2):
            raise ConfigError(
                f"no input of {n_letters} letters has count({operand_ft}) - count({config.operand_pt}) = q = {q}"
            )
        return
    distance = operand_ft - config.operand_pt
    largest = len(config.vocab) - n_letters + abs(distance)
    if q * distance <= 0 or not abs(distance) <= abs(q) <= largest:
        raise ConfigError(
            f"no input has its {operand_ft}-th largest letter q = {q} places after its {config.operand_pt}-th; "
            f"q needs the sign of operand_ft - operand_pt and |q| in {abs(distance)}..{largest}"
        )


def sample_letters(
    config: ProgramConfig,
    n: int,
    *,
    rng: np.random.Generator,
    n_letters: int | None = None,
    c_tr: float = 0.0,
    operand_ft: str | int | None = None,
    q: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Letters (example, n_letters) and a mask (example,) of the samples drawn under the correlation.

    Each sample is, with probability c_tr (the paper's C_Tr, or C_Te for test sets), drawn uniformly
    from the inputs with r(x, O_FT) - r(x, O_PT) = q, and otherwise from the program's own input
    distribution (which may satisfy the constraint by chance; the mask marks only the forced ones).
    """
    n_letters = config.max_seq_len if n_letters is None else n_letters
    operand_ft = config.default_operand_ft if operand_ft is None else operand_ft
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive number of samples, got {n!r}")
    if not 1 <= n_letters <= config.max_seq_len:
        raise ConfigError(f"n_letters {n_letters} must lie in 1..max_seq_len ({config.max_seq_len})")
    if isinstance(config, MaxIdentifierConfig) and n_letters < config.operand_pt:
        raise ConfigError(f"n_letters {n_letters} is fewer than operand_pt {config.operand_pt}")
    if not 0.0 <= c_tr <= 1.0:
        raise ConfigError(f"c_tr {c_tr} is a probability; give a value in [0, 1], e.g. --c-tr 0.8")
    if c_tr > 0:
        _check_operand_ft(config, n_letters, operand_ft)
        _check_q(config, n_letters, operand_ft, q)
    correlated = rng.random(n) < c_tr
    if isinstance(config, CounterConfig):
        letters = _sample_counter_uniform(config, n, n_letters, rng)
        for i in np.flatnonzero(correlated):
            letters[i] = _sample_counter_correlated(config, n_letters, operand_ft, q, rng)
    else:
        letters = _sample_max_identifier_uniform(config, n, n_letters, rng)
        for i in np.flatnonzero(correlated):
            letters[i] = _sample_max_identifier_correlated(config, n_letters, operand_ft, q, rng)
    return letters, correlated


@dataclass(frozen=True, kw_only=True)
class TracrDataset:
    """Plain arrays for training and evaluation; ids follow the compiled model's encodings."""

    tokens: np.ndarray  # (example, pos) int64: BOS then letters; pos = 1 + n_letters
    letters: np.ndarray  # (example, n_letters) str
    labels_pt: np.ndarray  # (example,) int64 output class id of r(x, O_PT)
    labels_ft: np.ndarray  # (example,) int64 output class id of r(x, O_FT)
    correlated: np.ndarray  # (example,) bool: drawn under r(x, O_FT) - r(x, O_PT) = q
    answer_position: int  # the last letter; every non-BOS position carries the answer
    operand_ft: str | int  # O_FT used for labels_ft
    q: int


def make_dataset(
    config: ProgramConfig,
    n: int,
    *,
    seed: int | Sequence[int],
    n_letters: int | None = None,
    c_tr: float = 0.0,
    operand_ft: str | int | None = None,
    q: int = 1,
) -> TracrDataset:
    """Sample n inputs (see `sample_letters`) and label them with the reference for O_PT and O_FT.

    `seed` is an int or a sequence of ints (numpy's SeedSequence entropy), e.g. (seed, stream, step).
    """
    operand_ft = config.default_operand_ft if operand_ft is None else operand_ft
    _check_operand_ft(config, config.max_seq_len if n_letters is None else n_letters, operand_ft)
    rng = np.random.default_rng(list(seed) if isinstance(seed, Sequence) else seed)
    letters, correlated = sample_letters(
        config, n, rng=rng, n_letters=n_letters, c_tr=c_tr, operand_ft=operand_ft, q=q
    )
    rows = letters.tolist()
    return TracrDataset(
        tokens=encode(letters, config=config),
        letters=letters,
        labels_pt=label_ids([reference_output(config, row) for row in rows], config=config),
        labels_ft=label_ids([reference_output(config, row, operand_ft) for row in rows], config=config),
        correlated=correlated,
        answer_position=letters.shape[1],
        operand_ft=operand_ft,
        q=q,
    )
