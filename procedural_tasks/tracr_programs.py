"""The study's two RASP programs (Jain et al. 2023, App. B.1, Alg. 1-2): their configs, pure-Python
references and tracr's token/answer encodings.

Counter: at every position, the number of occurrences of the operand O_PT (`a`) among letters drawn
uniformly with replacement from the first nine letters. Max-identifier: at every position, the O_PT-th
(5th) largest letter of letters drawn without replacement from a..z, in the order a > b > ... > z (App. D).

Compiling with tracr lives in `tracr_compilation` (the optional `tracr` extra), sampling inputs with the
spurious correlation in `tracr_sampling`, and the precompiled weights in `tracr_models`. This module needs
numpy only.
"""

import dataclasses
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from interp.errors import ConfigError, DataError

BOS = "$"  # the paper's exemplar BOS (Fig. 12); tracr's compiler_bos
PAD = "#"  # the paper's exemplar padding; tracr's compiler_pad


def _auto_mlp_exactness(max_seq_len: int) -> int:
    """Tracr's L for SelectorWidth's MLP: twice what separates widths up to max_seq_len.

    SelectorWidth reads the width w from 1/(w+1); neighbouring values differ by at least
    1/((N+1)(N+2)), and its discretising MLP is only exact when L exceeds twice the inverse gap.
    tracr's default L = 100 miscounts from w = 10 on (measured: 11 `a`s counted as 10).
    """
    return 4 * (max_seq_len + 1) * (max_seq_len + 2)


class _CompiledSizes:
    """What both programs share: a vocabulary, an input length and SelectorWidth's exactness L."""

    vocab: tuple[str, ...]
    max_seq_len: int
    mlp_exactness: int | None

    def _check_sizes(self) -> None:
        _check_vocab(self.vocab)
        _check_positive("max_seq_len", self.max_seq_len)
        if self.mlp_exactness is not None:
            _check_positive("mlp_exactness", self.mlp_exactness)

    @property
    def resolved_mlp_exactness(self) -> int:
        return self.mlp_exactness or _auto_mlp_exactness(self.max_seq_len)


@dataclass(frozen=True, kw_only=True)
class CounterConfig(_CompiledSizes):
    """Counter (paper Alg. 1): count the occurrences of operand O_PT. Compiles to 3 blocks."""

    name: ClassVar[str] = "counter"
    vocab: tuple[str, ...] = tuple("abcdefghi")  # the first nine letters (App. B.1), drawn with replacement
    max_seq_len: int = 45  # letters per input, BOS not counted (the paper's attention maps use ~45)
    operand_pt: str = "a"  # O_PT, compiled into the weights
    mlp_exactness: int | None = None  # tracr's L for SelectorWidth's MLP; None: 4(N+1)(N+2), N = max_seq_len

    def __post_init__(self) -> None:
        self._check_sizes()
        if self.operand_pt not in self.vocab:
            raise ConfigError(
                f"operand_pt {self.operand_pt!r} is not in vocab {''.join(self.vocab)}; pick one of its letters"
            )

    @property
    def default_operand_ft(self) -> str:
        """O_FT = `b` (the paper's fine-tuning operand)."""
        return next(letter for letter in self.vocab if letter != self.operand_pt)


@dataclass(frozen=True, kw_only=True)
class MaxIdentifierConfig(_CompiledSizes):
    """Max-identifier (paper Alg. 2): the O_PT-th largest letter, vocab order first > second > ... ."""

    name: ClassVar[str] = "max_identifier"
    vocab: tuple[str, ...] = tuple(
        string.ascii_lowercase
    )  # a > b > ... > z (App. D), drawn without replacement
    max_seq_len: int = 10  # letters per input, BOS not counted (the exemplar has 10)
    operand_pt: int = 5  # O_PT: return the operand_pt-th largest letter
    mlp_exactness: int | None = None  # tracr's L for SelectorWidth's MLP; None: 4(N+1)(N+2), N = max_seq_len

    def __post_init__(self) -> None:
        self._check_sizes()
        if self.max_seq_len > len(self.vocab):
            raise ConfigError(
                f"max_seq_len {self.max_seq_len} exceeds the {len(self.vocab)} letters drawn without "
                f"replacement; give max_seq_len <= {len(self.vocab)}"
            )
        if not 1 <= self.operand_pt <= self.max_seq_len:
            raise ConfigError(f"operand_pt {self.operand_pt} must lie in 1..max_seq_len ({self.max_seq_len})")

    @property
    def default_operand_ft(self) -> int:
        """O_FT = O_PT + 1 (the paper does not state it; with q = 1 this is its "a+1" example)."""
        return self.operand_pt + 1


ProgramConfig = CounterConfig | MaxIdentifierConfig


def _check_vocab(vocab: tuple[str, ...]) -> None:
    if not vocab or len(set(vocab)) != len(vocab):
        raise ConfigError(f"vocab {vocab!r} must be non-empty with distinct tokens")
    if BOS in vocab or PAD in vocab:
        raise ConfigError(f"vocab {vocab!r} contains the reserved BOS {BOS!r} or PAD {PAD!r}; remove them")


def _check_positive(field: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field} must be a positive integer, got {value!r}")


PROGRAMS: dict[str, ProgramConfig] = {"counter": CounterConfig(), "max_identifier": MaxIdentifierConfig()}


def program_config(name: str) -> ProgramConfig:
    """The compiled program named ``name``; a one-line ConfigError naming the valid ones otherwise."""
    if name not in PROGRAMS:
        raise ConfigError(f"unknown tracr program {name!r}; choose one of {', '.join(PROGRAMS)}")
    return PROGRAMS[name]


def program_config_to_dict(config: ProgramConfig) -> dict[str, Any]:
    """JSON-ready dict with the program name, so `program_config_from_dict` can tell the two apart."""
    return {"program": config.name, **dataclasses.asdict(config)}


def program_config_from_dict(data: dict[str, Any]) -> ProgramConfig:
    """Inverse of `program_config_to_dict`; rejects unknown programs and keys."""
    data = dict(data)
    name = data.pop("program", None)
    cls = type(program_config(name))
    fields = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - fields):
        raise ConfigError(f"unknown {name} config keys {unknown}; valid keys are {sorted(fields)}")
    if "vocab" in data:
        data["vocab"] = tuple(data["vocab"])
    return cls(**data)


# ---- Pure-Python references: the ground truth every other check is against.


def reference_counter(letters: Sequence[str], operand: str) -> int:
    """Number of occurrences of `operand` in `letters`."""
    return sum(1 for letter in letters if letter == operand)


def reference_max_identifier(
    letters: Sequence[str], order: int, vocab: Sequence[str] = string.ascii_lowercase
) -> str:
    """The `order`-th largest of distinct `letters`, where vocab[0] > vocab[1] > ... (1-indexed `order`)."""
    rank = {letter: i for i, letter in enumerate(vocab)}
    if unknown := sorted(set(letters) - set(rank)):
        raise DataError(f"letters {unknown} are not in the vocabulary {''.join(vocab)}")
    if len(set(letters)) != len(letters):
        raise DataError(f"max-identifier needs distinct letters, got {''.join(letters)!r}")
    if not 1 <= order <= len(letters):
        raise DataError(f"order {order} needs 1 <= order <= {len(letters)} (the number of letters)")
    return sorted(letters, key=rank.__getitem__)[order - 1]


def reference_output(
    config: ProgramConfig, letters: Sequence[str], operand: str | int | None = None
) -> int | str:
    """The program's answer for `letters`; `operand` defaults to the compiled O_PT."""
    operand = config.operand_pt if operand is None else operand
    if isinstance(config, CounterConfig):
        return reference_counter(letters, operand)
    return reference_max_identifier(letters, operand, config.vocab)


def spurious_difference(config: ProgramConfig, letters: Sequence[str], *, operand_ft: str | int) -> int:
    """r(x, O_FT) - r(x, O_PT): a count difference (Counter) or a vocabulary-index difference (Max-id)."""
    if isinstance(config, CounterConfig):
        return reference_counter(letters, operand_ft) - reference_counter(letters, config.operand_pt)
    index = {letter: i for i, letter in enumerate(config.vocab)}
    ft = reference_max_identifier(letters, operand_ft, config.vocab)
    pt = reference_max_identifier(letters, config.operand_pt, config.vocab)
    return index[ft] - index[pt]


# ---- Encodings: tracr's, recomputed here so data can be built without loading weights.


def input_encoding_for(config: ProgramConfig) -> dict[str, int]:
    """Token -> id as tracr assigns them: the sorted vocabulary with BOS and PAD."""
    return {token: i for i, token in enumerate(sorted({*config.vocab, BOS, PAD}))}


def output_encoding_for(config: ProgramConfig) -> dict[int | str, int]:
    """Answer value -> output class id as tracr assigns them (sorted values)."""
    if isinstance(config, CounterConfig):
        return {count: count for count in range(config.max_seq_len + 1)}
    return {letter: i for i, letter in enumerate(sorted(config.vocab))}


def encode(
    letters: Sequence[Sequence[str] | np.ndarray] | np.ndarray, *, config: ProgramConfig
) -> np.ndarray:
    """Token ids (example, 1 + longest) int64: BOS, the letters, then PAD up to the longest input."""
    rows = [list(row) for row in letters]
    if not rows:
        raise DataError("no inputs to encode; give at least one sequence of letters")
    longest = max(len(row) for row in rows)
    if longest > config.max_seq_len:
        raise DataError(
            f"an input has {longest} letters but {config.name} was compiled for max_seq_len {config.max_seq_len}"
        )
    table = input_encoding_for(config)
    tokens = np.full((len(rows), longest + 1), table[PAD], dtype=np.int64)
    tokens[:, 0] = table[BOS]
    for i, row in enumerate(rows):
        try:
            tokens[i, 1 : len(row) + 1] = [table[letter] for letter in row]
        except KeyError as error:
            raise DataError(
                f"input {i} has token {error.args[0]!r}, not in the {config.name} vocab {''.join(config.vocab)}"
            ) from None
        if BOS in row or PAD in row:
            raise DataError(f"input {i} contains BOS {BOS!r} or PAD {PAD!r}; pass the letters only")
    return tokens


def decode_output(logits: np.ndarray, *, config: ProgramConfig) -> np.ndarray:
    """Answer values from output logits (..., n_classes): the argmax class mapped back to its value."""
    logits = np.asarray(logits)
    table = output_encoding_for(config)
    if logits.shape[-1] != len(table):
        raise DataError(f"logits have {logits.shape[-1]} classes but {config.name} has {len(table)}")
    values = np.array(list(table), dtype=np.int64 if isinstance(config, CounterConfig) else str)
    return values[logits.argmax(axis=-1)]


def label_ids(values: Sequence[int | str] | np.ndarray, *, config: ProgramConfig) -> np.ndarray:
    """Output class ids (int64) of answer values, for cross-entropy at the answer position."""
    table = output_encoding_for(config)
    return np.array([table[value.item() if isinstance(value, np.generic) else value] for value in values])
