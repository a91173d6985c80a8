"""The study's two RASP programs (Jain et al. 2023, App. B.1, Alg. 1-2), their pure-Python references,
input samplers with the spurious-correlation edit, and compilation with tracr.

Counter: at every position, the number of occurrences of the operand O_PT (`a`) among letters drawn
uniformly with replacement from the first nine letters. Max-identifier: at every position, the O_PT-th
(5th) largest letter of letters drawn without replacement from a..z, in the order a > b > ... > z (App. D).

tracr and JAX are the optional `tracr` extra. They are imported only inside `make_rasp_program` and
`compile_program`; `scripts/compile_tracr.py` runs those once and ships the weights in `tracr_weights/`,
which `procedural_tasks.tracr_models.load_compiled` rebuilds as a TransformerBridge without JAX.
Everything else in this module needs numpy only.

The spurious correlation (paper Tab. 2, C_Tr and q): with probability c_tr a sample is replaced by a draw
from the uniform distribution over inputs that satisfy r(x, O_FT) - r(x, O_PT) = q, where r is the
program's answer. For Max-identifier r is the letter's index in the vocabulary order, so the O_FT-th
largest letter sits q places after the O_PT-th largest (q = 1, O_FT = 6: "a+1"). Conditioning, rather
than editing letters in place, keeps every other feature of an edited sample uniform given the constraint.
"""

import dataclasses
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from interp.errors import ConfigError, DataError

BOS = "$"  # the paper's exemplar BOS (Fig. 12); tracr's compiler_bos
PAD = "#"  # the paper's exemplar padding; tracr's compiler_pad
FORMAT_VERSION = 1  # of the files in tracr_weights/


def _auto_mlp_exactness(max_seq_len: int) -> int:
    """Tracr's L for SelectorWidth's MLP: twice what separates widths up to max_seq_len.

    SelectorWidth reads the width w from 1/(w+1); neighbouring values differ by at least
    1/((N+1)(N+2)), and its discretising MLP is only exact when L exceeds twice the inverse gap.
    tracr's default L = 100 miscounts from w = 10 on (measured: 11 `a`s counted as 10).
    """
    return 4 * (max_seq_len + 1) * (max_seq_len + 2)


@dataclass(frozen=True, kw_only=True)
class CounterConfig:
    """Counter (paper Alg. 1): count the occurrences of operand O_PT. Compiles to 3 blocks."""

    name: ClassVar[str] = "counter"
    vocab: tuple[str, ...] = tuple("abcdefghi")  # the first nine letters (App. B.1), drawn with replacement
    max_seq_len: int = 45  # letters per input, BOS not counted (the paper's attention maps use ~45)
    operand_pt: str = "a"  # O_PT, compiled into the weights
    mlp_exactness: int | None = None  # tracr's L for SelectorWidth's MLP; None: 4(N+1)(N+2), N = max_seq_len

    def __post_init__(self) -> None:
        _check_vocab(self.vocab)
        _check_positive("max_seq_len", self.max_seq_len)
        if self.operand_pt not in self.vocab:
            raise ConfigError(
                f"operand_pt {self.operand_pt!r} is not in vocab {''.join(self.vocab)}; pick one of its letters"
            )
        if self.mlp_exactness is not None:
            _check_positive("mlp_exactness", self.mlp_exactness)

    @property
    def resolved_mlp_exactness(self) -> int:
        return self.mlp_exactness or _auto_mlp_exactness(self.max_seq_len)

    @property
    def default_operand_ft(self) -> str:
        """O_FT = `b` (the paper's fine-tuning operand)."""
        return next(letter for letter in self.vocab if letter != self.operand_pt)


@dataclass(frozen=True, kw_only=True)
class MaxIdentifierConfig:
    """Max-identifier (paper Alg. 2): the O_PT-th largest letter, vocab order first > second > ... ."""

    name: ClassVar[str] = "max_identifier"
    vocab: tuple[str, ...] = tuple(
        string.ascii_lowercase
    )  # a > b > ... > z (App. D), drawn without replacement
    max_seq_len: int = 10  # letters per input, BOS not counted (the exemplar has 10)
    operand_pt: int = 5  # O_PT: return the operand_pt-th largest letter
    mlp_exactness: int | None = None  # tracr's L for SelectorWidth's MLP; None: 4(N+1)(N+2), N = max_seq_len

    def __post_init__(self) -> None:
        _check_vocab(self.vocab)
        _check_positive("max_seq_len", self.max_seq_len)
        if self.max_seq_len > len(self.vocab):
            raise ConfigError(
                f"max_seq_len {self.max_seq_len} exceeds the {len(self.vocab)} letters drawn without "
                f"replacement; give max_seq_len <= {len(self.vocab)}"
            )
        if not 1 <= self.operand_pt <= self.max_seq_len:
            raise ConfigError(f"operand_pt {self.operand_pt} must lie in 1..max_seq_len ({self.max_seq_len})")
        if self.mlp_exactness is not None:
            _check_positive("mlp_exactness", self.mlp_exactness)

    @property
    def resolved_mlp_exactness(self) -> int:
        return self.mlp_exactness or _auto_mlp_exactness(self.max_seq_len)

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


def program_config_to_dict(config: ProgramConfig) -> dict[str, Any]:
    """JSON-ready dict with the program name, so `program_config_from_dict` can tell the two apart."""
    return {"program": config.name, **dataclasses.asdict(config)}


def program_config_from_dict(data: dict[str, Any]) -> ProgramConfig:
    """Inverse of `program_config_to_dict`; rejects unknown programs and keys."""
    data = dict(data)
    name = data.pop("program", None)
    if name not in PROGRAMS:
        raise ConfigError(f"unknown tracr program {name!r}; choose one of {', '.join(PROGRAMS)}")
    cls = type(PROGRAMS[name])
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


# ---- RASP programs and compilation (tracr imported lazily).


def make_rasp_program(config: ProgramConfig) -> Any:
    """The RASP program, in the paper's layout: each compiles to 3 single-head blocks.

    Counter: MLP-0 maps tokens == O_PT; attention-1 selects those positions and MLP-1 turns the
    selector width into a categorical count; attention-2 copies it through an identity Select.
    Max-identifier: block 0 counts, for each letter, the letters larger than it (the sort); MLP-1
    marks the one with O_PT - 1 larger letters; attention-2 reads that letter (the "read").
    """
    from tracr.rasp import rasp

    if isinstance(config, CounterConfig):
        operand = config.operand_pt
        is_operand = rasp.categorical(rasp.Map(lambda token: token == operand, rasp.tokens)).named(
            "is_operand"
        )
        select_operand = rasp.Select(is_operand, is_operand, lambda key, query: key).named("select_operand")
        count = rasp.categorical(rasp.SelectorWidth(select_operand)).named("count")
        select_self = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ).named("select_self")
        return rasp.categorical(rasp.Aggregate(select_self, count)).named("counter")

    rank = {letter: i for i, letter in enumerate(config.vocab)}
    target = config.operand_pt - 1
    select_larger = rasp.Select(rasp.tokens, rasp.tokens, lambda key, query: rank[key] < rank[query])
    n_larger = rasp.categorical(rasp.SelectorWidth(select_larger.named("select_larger"))).named("n_larger")
    is_target = rasp.categorical(rasp.Map(lambda n: n == target, n_larger)).named("is_target")
    select_target = rasp.Select(is_target, is_target, lambda key, query: key).named("select_target")
    return rasp.categorical(rasp.Aggregate(select_target, rasp.tokens)).named("max_identifier")


def compile_program(config: ProgramConfig) -> Any:
    """Compile with tracr (needs the `tracr` extra); returns tracr's AssembledTransformerModel."""
    try:
        from tracr.compiler import compiling
    except ImportError as error:
        raise ConfigError(
            "compiling needs tracr and JAX; install the extra (pip install 'ftmech[tracr]') or use the "
            "precompiled weights through procedural_tasks.tracr_models.load_compiled"
        ) from error
    return compiling.compile_rasp_to_model(
        make_rasp_program(config),
        vocab=set(config.vocab),
        max_seq_len=config.max_seq_len,
        compiler_bos=BOS,
        compiler_pad=PAD,
        mlp_exactness=config.resolved_mlp_exactness,
    )


def export_compiled(model: Any, config: ProgramConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tracr's raw parameters ("module/param" -> float32 array) and the JSON metadata beside them.

    The metadata holds what a JAX-free loader needs: residual labels, input and output encodings,
    the RASP output label, the TransformerLens config fields, the program config and the versions.
    """
    import importlib.metadata as metadata

    arrays = {
        f"{module}/{param}": np.asarray(value, dtype=np.float32)
        for module, params in model.params.items()
        for param, value in params.items()
    }
    model_config = model.model_config
    output_encoding = model.output_encoder.encoding_map
    input_encoding = model.input_encoder.encoding_map
    if input_encoding != input_encoding_for(config) or output_encoding != output_encoding_for(config):
        raise AssertionError("tracr's encodings differ from input_encoding_for/output_encoding_for")
    embed = arrays["token_embed/embeddings"]
    bridge_config = {
        "n_layers": model_config.num_layers,
        "d_model": int(embed.shape[1]),
        "d_head": model_config.key_size,
        "n_heads": model_config.num_heads,
        "d_mlp": model_config.mlp_hidden_size,
        "n_ctx": int(arrays["pos_embed/embeddings"].shape[0]),
        "d_vocab": int(embed.shape[0]),
        "d_vocab_out": len(output_encoding),
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "causal" if model_config.causal else "bidirectional",
    }
    if model_config.layer_norm:
        raise AssertionError("tracr compiled a model with layer norm; the loader assumes none")
    versions = {"format": FORMAT_VERSION}
    for package in ("tracr-pypi", "jax", "jaxlib", "dm-haiku", "numpy"):
        versions[package] = metadata.version(package)
    metadata_json = {
        "program": program_config_to_dict(config),
        "bridge_config": bridge_config,
        "residual_labels": list(model.residual_labels),
        "output_label": _output_label(model.residual_labels, config.name),
        "input_encoding": [[token, index] for token, index in input_encoding.items()],
        "output_encoding": [[value, index] for value, index in output_encoding.items()],
        "bos": BOS,
        "pad": PAD,
        "versions": versions,
    }
    return arrays, metadata_json


def _output_label(residual_labels: Sequence[str], name: str) -> str:
    """The RASP label of the program's result: `make_rasp_program` names it after the program."""
    labels = {label.rpartition(":")[0] for label in residual_labels}
    candidates = [label for label in labels if label.rpartition("_")[0] == name]
    if len(candidates) != 1:
        raise AssertionError(f"cannot tell the output label of {name} among {sorted(labels)}")
    return candidates[0]


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


# ---- Samplers (seeded numpy Generators) and the spurious-correlation edit.


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
