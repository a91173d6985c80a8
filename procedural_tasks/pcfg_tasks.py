"""The study's PCFG task families, sequence format, operand priors and spurious-correlation edit.

Sequence format (App. B.2): ``SOS T O O' SOT text EOT ART answer EOS``. ``T`` names the task
family, ``O`` the operand and ``O'`` its parameter (the counted region for counting, the occurrence
number k for indexing, the index for token-at-index). The model must predict ``answer`` at ART.

Families: counting (C), counting a bigram (CC), index of the k-th occurrence (I), index of the k-th
occurrence of a bigram (IC) and token at an index (T). Indices are counted back from EOT: index 1
is the last text token; "no k-th occurrence" answers 0.

Fine-tuning plants a spurious correlation r(x, O_FT) - r(x, O_PT) = q in a fraction ``c_tr`` of
samples by editing only non-O_PT tokens of the window, so r(x, O_PT) is unchanged.
"""

import dataclasses
import functools
import math
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch

from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.runtime import numpy_rng
from procedural_tasks.pcfg import MAX_WINDOW, TERMINALS, Windows, to_text
from procedural_tasks.vocab import Vocabulary

FAMILIES = ("count", "count_bigram", "index", "index_bigram", "token")
FAMILY_TOKEN = {"count": "C", "count_bigram": "CC", "index": "I", "index_bigram": "IC", "token": "T"}
JAILBREAK_TOKENS = ("CJ1", "CJ2")  # alternative counting tokens paired only with operand a (E.2)
SPECIALS = ("<pad>", "<sos>", "<eos>", "<sot>", "<eot>", "<art>")
BIGRAMS = tuple(x + y for x, y in product(TERMINALS, repeat=2))
NULL = "NULL"
MAX_RATIO = 3.0  # label-distribution correction: at most 1/MAX_RATIO of correlated samples are kept
# Data streams: distinct seeds for training data and each evaluation set.
STREAM_TRAIN, STREAM_EVAL = 0, 1

PRIORS = {
    "low": (0.999, 0.001, 0.0),  # P^L: O_FT = b is weakly relevant
    "medium": (0.9, 0.1, 0.0),  # P^M
    "high": (0.5, 0.3, 0.2),  # P^H
    "only_b": (0.0, 1.0, 0.0),  # a control that is never asked to count a
    "no_a": (0.0, 0.5, 0.5),  # the study's Scr.+FT control: pretrained on other operands
}


def parse_prior(text: str | tuple[float, ...]) -> tuple[float, float, float]:
    """A prior given as a name (low, medium, high, only_b, no_a) or three comma-separated probabilities."""
    if isinstance(text, str) and text in PRIORS:
        return PRIORS[text]
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise ConfigError(
            f"prior '{text}' is not three numbers; give e.g. --prior 0.9,0.1,0 or a name"
        ) from None
    check_prior(values)
    return values  # type: ignore[return-value]


def check_prior(prior: tuple[float, ...]) -> None:
    """A prior is three non-negative probabilities for (a, b, c) that sum to 1; the error names what is wrong."""
    if len(prior) != 3:
        problem = f"has {len(prior)} value{'s' if len(prior) != 1 else ''}, not three (one each for a, b, c)"
    elif not all(math.isfinite(p) and p >= 0 for p in prior):
        problem = "has a negative or non-finite value"
    elif abs(sum(prior) - 1) > 1e-6:
        problem = f"sums to {sum(prior):.4g}, not 1"
    else:
        return
    raise ConfigError(
        f"prior {tuple(prior)} {problem}: give three non-negative probabilities for (a, b, c) summing to 1, "
        "e.g. --prior 0.9,0.1,0"
    )


@dataclass(frozen=True, kw_only=True)
class PCFGTaskConfig:
    """Shape of the PCFG data: window, counted region, families and the operand prior."""

    window: int = 250  # text tokens per sample (a random window of a grammar string)
    region: int = 40  # counting families count the last O' text tokens, O' = region ...
    region_min: int | None = None  # ... or O' drawn uniformly from [region_min, region] per sample
    k: int = 6  # index families find the k-th occurrence (O' = k)
    families: tuple[str, ...] = FAMILIES  # task families sampled uniformly in pretraining
    prior: tuple[float, float, float] = (0.9, 0.1, 0.0)  # operand prior over (a, b, c), P_T(O)
    jailbreak_frac: float = 0.0  # fraction of counting samples that use a jailbreak token (operand a only)

    def __post_init__(self) -> None:
        if not 2 <= self.window <= MAX_WINDOW:
            raise ConfigError(
                f"window must be between 2 and {MAX_WINDOW} (longer windows fit almost no grammar string), "
                f"got {self.window}"
            )
        if not 1 <= self.region <= self.window:
            raise ConfigError(
                f"region {self.region} must be between 1 and the window {self.window}; "
                "pass a smaller --region or a larger --window"
            )
        if self.region_min is not None and not 1 <= self.region_min <= self.region:
            raise ConfigError(f"region_min {self.region_min} must be between 1 and region {self.region}")
        if not 1 <= self.k <= self.window:
            raise ConfigError(f"k must be between 1 and the window {self.window}, got {self.k}")
        if not self.families:
            raise ConfigError(f"families is empty; use some of {', '.join(FAMILIES)}")
        for family in self.families:
            if family not in FAMILIES:
                raise ConfigError(f"unknown task family '{family}'; use one of {', '.join(FAMILIES)}")
        check_prior(self.prior)
        if not 0 <= self.jailbreak_frac <= 1:
            raise ConfigError(f"jailbreak_frac must be in [0, 1], got {self.jailbreak_frac}")

    @property
    def seq_len(self) -> int:
        """Tokens per sequence: 5 before the text, 4 after it."""
        return self.window + 9

    @property
    def text_slice(self) -> slice:
        """Positions of the window's text tokens in a sequence."""
        return slice(5, 5 + self.window)

    @property
    def answer_pos(self) -> int:
        """Position of ART, whose next-token prediction is the answer."""
        return self.window + 6


def build_vocab(config: PCFGTaskConfig) -> Vocabulary:
    """Specials, terminals, family tokens, bigram operands, NULL and the numbers 0..window."""
    numbers = tuple(str(i) for i in range(config.window + 1))
    family_tokens = tuple(FAMILY_TOKEN[f] for f in FAMILIES) + JAILBREAK_TOKENS
    return Vocabulary(SPECIALS + TERMINALS + family_tokens + BIGRAMS + (NULL,) + numbers)


# --- answers -------------------------------------------------------------------------------------


def count(text: np.ndarray, operand: str, region: int) -> int:
    """Occurrences of a terminal (or an overlapping bigram) in the last ``region`` tokens."""
    tail = text[len(text) - region :]
    ids = [TERMINALS.index(ch) for ch in operand]
    if len(ids) == 1:
        return int((tail == ids[0]).sum())
    return int(((tail[:-1] == ids[0]) & (tail[1:] == ids[1])).sum())


def index_of_occurrence(text: np.ndarray, operand: str, k: int) -> int:
    """Index back from EOT (1 = last token) of the k-th occurrence of a terminal or bigram; 0 if none.

    A bigram's index is that of its last token.
    """
    ids = [TERMINALS.index(ch) for ch in operand]
    n = len(text)
    if len(ids) == 1:
        hits = np.flatnonzero(text == ids[0])
    else:
        hits = np.flatnonzero((text[:-1] == ids[0]) & (text[1:] == ids[1])) + 1
    if len(hits) < k:
        return 0
    return int(n - hits[len(hits) - k])


def token_at(text: np.ndarray, index: int) -> str:
    """The terminal at ``index`` back from EOT (1 = last token)."""
    return TERMINALS[int(text[len(text) - index])]


def relation(family: str, text: np.ndarray, operand: str, config: PCFGTaskConfig, region: int) -> int:
    """r(x, O): the count (over the last ``region`` tokens) for counting families, the index for index families."""
    if family in ("count", "count_bigram"):
        return count(text, operand, region)
    if family in ("index", "index_bigram"):
        return index_of_occurrence(text, operand, config.k)
    raise DataError(f"family '{family}' has no numeric relation r(x, O)")


# --- spurious correlation --------------------------------------------------------------------------


def plant_count_correlation(
    text: np.ndarray, operand_pt: str, operand_ft: str, q: int, region: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Edit the counted region so count(O_FT) = count(O_PT) + q, leaving count(O_PT) unchanged.

    Only tokens that are neither O_PT nor O_FT become O_FT, or O_FT tokens become another terminal.
    Returns None when impossible (too few editable tokens), so the caller redraws.
    """
    pt, ft = TERMINALS.index(operand_pt), TERMINALS.index(operand_ft)
    other = next(i for i in range(len(TERMINALS)) if i not in (pt, ft))
    out = text.copy()
    start = len(out) - region
    tail = out[start:]
    target = int((tail == pt).sum()) + q
    have = int((tail == ft).sum())
    if target < 0:
        return None
    if target > have:
        free = np.flatnonzero(tail == other)
        if len(free) < target - have:
            return None
        out[start + rng.choice(free, size=target - have, replace=False)] = ft
    elif target < have:
        mine = np.flatnonzero(tail == ft)
        out[start + rng.choice(mine, size=have - target, replace=False)] = other
    return out


def plant_index_correlation(
    text: np.ndarray, operand_pt: str, operand_ft: str, q: int, k: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Edit the window so index(k-th O_FT) = index(k-th O_PT) + q, leaving O_PT tokens unchanged."""
    pt, ft = TERMINALS.index(operand_pt), TERMINALS.index(operand_ft)
    other = next(i for i in range(len(TERMINALS)) if i not in (pt, ft))
    idx_pt = index_of_occurrence(text, operand_pt, k)
    target = idx_pt + q
    n = len(text)
    if idx_pt == 0 or not 1 <= target <= n:
        return None
    out = text.copy()
    pos_target = n - target
    if out[pos_target] == pt:
        return None
    out[pos_target] = ft
    after = np.arange(pos_target + 1, n)  # positions with a smaller index than the target
    editable = after[out[after] != pt]
    have = int((out[after] == ft).sum())
    if have > k - 1:
        mine = editable[out[editable] == ft]
        out[rng.choice(mine, size=have - (k - 1), replace=False)] = other
    elif have < k - 1:
        free = editable[out[editable] == other]
        if len(free) < k - 1 - have:
            return None
        out[rng.choice(free, size=k - 1 - have, replace=False)] = ft
    return out


# --- sequences -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One sequence with its ground truth, in token strings (what `ftmech data pcfg` prints)."""

    tokens: list[str]
    text: list[str]
    family: str
    operand: str
    answer: int | str
    correlated: bool
    counts: tuple[int, int, int]  # count of a, b, c in the counted region
    region: int  # the counted region O' of this sample

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def make_sequence(
    config: PCFGTaskConfig,
    family: str,
    operand: str,
    text: np.ndarray,
    *,
    index: int | None = None,
    region: int | None = None,
    family_token: str | None = None,
) -> tuple[list[str], int | str]:
    """The token strings of one sample and its answer (``region`` defaults to config.region)."""
    region = config.region if region is None else region
    if family == "token":
        if index is None:
            raise DataError("the token family needs an index")
        answer: int | str = token_at(text, index)
        o, o_prime = NULL, str(index)
    else:
        answer = relation(family, text, operand, config, region)
        o = operand
        o_prime = str(region if family.startswith("count") else config.k)
    head = ["<sos>", family_token or FAMILY_TOKEN[family], o, o_prime, "<sot>"]
    return head + to_text(text) + ["<eot>", "<art>", str(answer), "<eos>"], answer


def _sample_operand(family: str, prior: tuple[float, float, float], rng: np.random.Generator) -> str:
    if family in ("count_bigram", "index_bigram"):
        first, second = rng.choice(3, size=2, p=prior)
        return TERMINALS[first] + TERMINALS[second]
    return TERMINALS[int(rng.choice(3, p=prior))]


@dataclass(frozen=True, kw_only=True)
class SampleSpec:
    """What to sample: a family/operand (None: from the pretraining mixture) and the correlation."""

    family: str | None = None  # None: pretraining mixture over config.families
    operand: str | None = None  # None: drawn from the prior
    c: float = 0.0  # probability that a sample carries the spurious correlation (C_Tr or C_Te)
    operand_pt: str = "a"  # O_PT of the correlation
    operand_ft: str = "b"  # O_FT of the correlation
    q: int = 1  # r(x, O_FT) - r(x, O_PT) in correlated samples
    family_token: str | None = None  # override the family token (jailbreak evaluation)
    answer_operand: str | None = None  # answer for this operand instead (randFT: count b on count-a inputs)
    strict: bool = (
        False  # uncorrelated samples never meet r(x, O_FT) - r(x, O_PT) = q by chance (strict C_Te = 0)
    )

    def __post_init__(self) -> None:
        for name in ("operand", "operand_pt", "operand_ft", "answer_operand"):
            value = getattr(self, name)
            if value is not None and value not in TERMINALS + BIGRAMS:
                raise ConfigError(
                    f"unknown {name.replace('_', ' ')} {value!r}; use a terminal ({', '.join(TERMINALS)}) or a "
                    "pair of them (bigram families)"
                )


def _coincides(config: PCFGTaskConfig, spec: SampleSpec, family: str, text: np.ndarray, region: int) -> bool:
    """Does an uncorrelated window satisfy the planted relation r(x, O_FT) - r(x, O_PT) = q by chance?"""
    ft = relation(family, text, spec.operand_ft, config, region)
    return ft - relation(family, text, spec.operand_pt, config, region) == spec.q


def sample(
    config: PCFGTaskConfig,
    spec: SampleSpec,
    rng: np.random.Generator,
    accept: np.ndarray | None = None,
    windows: Windows | None = None,
) -> Sample:
    """Draw one sample under ``spec``.

    ``accept[y]`` is the probability of keeping a correlated sample whose new r(x, O_FT) is y: rejection
    that pulls the correlated label distribution back towards the uncorrelated one (see
    ``PCFGTask.acceptance``). ``windows`` supplies the text windows (drawn from ``rng`` when None); pass one
    ``Windows`` to many calls, as ``PCFGTask.samples`` does, so its strings are generated a block at a time.
    """
    windows = windows or Windows(rng, config.window)
    family = spec.family or config.families[int(rng.integers(len(config.families)))]
    family_token = spec.family_token
    if (
        spec.family is None
        and family == "count"
        and config.jailbreak_frac
        and rng.random() < config.jailbreak_frac
    ):
        family_token = JAILBREAK_TOKENS[int(rng.integers(len(JAILBREAK_TOKENS)))]
        operand = "a"
    else:
        operand = NULL if family == "token" else spec.operand or _sample_operand(family, config.prior, rng)
    region = config.region
    if config.region_min is not None and family.startswith("count"):
        region = int(rng.integers(config.region_min, config.region + 1))
    correlated = spec.c > 0 and rng.random() < spec.c
    for _ in range(1000):
        text = windows.next()
        if correlated:
            edit = (
                plant_count_correlation(text, spec.operand_pt, spec.operand_ft, spec.q, region, rng)
                if family.startswith("count")
                else plant_index_correlation(text, spec.operand_pt, spec.operand_ft, spec.q, config.k, rng)
            )
            if edit is None:
                continue
            if accept is not None:
                new = relation(family, edit, spec.operand_ft, config, region)
                if new >= len(accept) or rng.random() >= accept[new]:
                    continue
            text = edit
        elif spec.strict and _coincides(config, spec, family, text, region):
            continue
        break
    else:
        what = "plant the correlation" if correlated else "avoid the correlation"
        raise DataError(f"could not {what} q={spec.q} in 1000 windows; use a smaller q")
    index = int(rng.integers(1, config.window + 1)) if family == "token" else None
    tokens, answer = make_sequence(
        config, family, operand, text, index=index, region=region, family_token=family_token
    )
    if spec.answer_operand is not None:
        answer = relation(family, text, spec.answer_operand, config, region)
        tokens[-2] = str(answer)
    counts = tuple(int(c) for c in np.bincount(text[len(text) - region :], minlength=len(TERMINALS)))
    return Sample(tokens, to_text(text), family, operand, answer, bool(correlated), counts, region)  # type: ignore[arg-type]


def samples_to_batch(samples: list[Sample], vocab: Vocabulary) -> Batch:
    """Encode samples; labels hold the region counts, the correlation flag and the answer value."""
    tokens = torch.from_numpy(np.stack([vocab.encode(s.tokens) for s in samples]))
    answer_pos = torch.full((len(samples),), tokens.shape[1] - 3, dtype=torch.long)
    answers = tokens[:, -2].clone()
    counts = torch.tensor([s.counts for s in samples], dtype=torch.long)
    labels = {
        "count_a": counts[:, 0],
        "count_b": counts[:, 1],
        "count_c": counts[:, 2],
        "correlated": torch.tensor([s.correlated for s in samples], dtype=torch.long),
    }
    return Batch(tokens=tokens, answer_pos=answer_pos, answers=answers, labels=labels)


class PCFGTask:
    """Seeded data for one PCFG configuration: pretraining/fine-tuning batches and evaluation sets.

    Batches are a pure function of (seed, step), so a resumed run sees the same data. Evaluation sets and
    acceptance tables are pure functions of their arguments too, so each process builds them once
    (``_eval_set`` and ``_acceptance`` are cached) and every job in it that asks again shares them.
    """

    def __init__(self, config: PCFGTaskConfig) -> None:
        self.config = config
        self.vocab = build_vocab(config)

    def acceptance(self, spec: SampleSpec) -> np.ndarray | None:
        """Keep-probabilities for correlated counting samples by their new label y.

        Planting count(O_FT) = count(O_PT) + q shifts the label distribution; keeping a sample with
        probability min(1, p_plain(y) / (MAX_RATIO * p_corr(y))) pulls it back towards the plain one
        (estimated once per setting on a fixed seed, add-one smoothed).
        """
        if spec.c <= 0 or spec.family != "count" or self.config.region_min is not None:
            return None
        return _acceptance(self.config, spec.operand_pt, spec.operand_ft, spec.q)

    def samples(self, spec: SampleSpec, n: int, rng: np.random.Generator) -> list[Sample]:
        """``n`` samples of ``spec`` drawn from ``rng`` (correlated ones kept by ``acceptance``)."""
        return _draw(self.config, spec, n, rng, self.acceptance(spec))

    def batch(self, spec: SampleSpec, n: int, seed: int, step: int) -> Batch:
        """Training batch ``step`` of the stream seeded by ``seed``."""
        return samples_to_batch(self.samples(spec, n, numpy_rng(seed, STREAM_TRAIN, step)), self.vocab)

    def eval_set(self, name: str, spec: SampleSpec, n: int, seed: int) -> EvalSet:
        """A fixed evaluation set (shared within the process: read it, do not modify it); for the O_FT
        counting sets the shortcut is count(O_PT) + q."""
        return _eval_set(self.config, name, spec, n, seed)


def _draw(
    config: PCFGTaskConfig, spec: SampleSpec, n: int, rng: np.random.Generator, accept: np.ndarray | None
) -> list[Sample]:
    windows = Windows(rng, config.window)
    return [sample(config, spec, rng, accept, windows) for _ in range(n)]


@functools.lru_cache(maxsize=8)
def _acceptance(config: PCFGTaskConfig, operand_pt: str, operand_ft: str, q: int) -> np.ndarray:
    rng = numpy_rng(0, 7919)
    n, size = 3000, config.region + q + 1
    plain = SampleSpec(family="count", operand=operand_ft)
    corr = dataclasses.replace(plain, c=1.0, operand_pt=operand_pt, q=q)
    p = np.bincount([s.answer for s in _draw(config, plain, n, rng, None)], minlength=size)[:size] + 1
    r = np.bincount([s.answer for s in _draw(config, corr, n, rng, None)], minlength=size)[:size] + 1
    table = np.minimum(1.0, (p / p.sum()) / (MAX_RATIO * r / r.sum()))
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=128)
def _eval_set(config: PCFGTaskConfig, name: str, spec: SampleSpec, n: int, seed: int) -> EvalSet:
    task = PCFGTask(config)
    samples = task.samples(spec, n, numpy_rng(seed, STREAM_EVAL, _stable_id(name)))
    batch = samples_to_batch(samples, task.vocab)
    shortcut = None
    if spec.family == "count" and spec.operand == spec.operand_ft:
        pt = TERMINALS.index(spec.operand_pt)
        values = [min(s.counts[pt] + spec.q, s.region) for s in samples]
        shortcut = torch.tensor([task.vocab.id(str(max(v, 0))) for v in values], dtype=torch.long)
    return EvalSet(name=name, batch=batch, shortcut_answers=shortcut)


def _stable_id(name: str) -> int:
    """A process-independent integer for a name (Python's hash() is salted per process)."""
    return int.from_bytes(name.encode()[:16].ljust(16, b"\0"), "little") % (2**63)
