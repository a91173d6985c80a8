"""The grammar, windows, task labels and the spurious-correlation edit, against independent checks."""

import dataclasses
import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interp.errors import ConfigError, DataError
from procedural_tasks.pcfg import RULES, TERMINALS, WINDOW_BLOCK, Windows, sample_strings, to_text
from procedural_tasks.pcfg_protocols import study_preset
from procedural_tasks.pcfg_tasks import (
    PCFGTask,
    PCFGTaskConfig,
    SampleSpec,
    _acceptance,
    _eval_set,
    parse_prior,
    plant_count_correlation,
    plant_index_correlation,
    sample,
)
from tests.conftest import tiny_task_config


def derives(text: str) -> bool:
    """Independent parser: can the root ``s`` derive exactly ``text``? (memoised end positions)"""

    @functools.cache
    def ends(symbol: str, start: int) -> frozenset[int]:
        if symbol in TERMINALS:
            return frozenset({start + 1}) if start < len(text) and text[start] == symbol else frozenset()
        out: set[int] = set()
        for rhs in RULES[symbol]:
            positions = {start}
            for part in rhs:
                positions = {e for p in positions for e in ends(part, p)}
            out |= positions
        return frozenset(out)

    return len(text) in ends("s", 0)


@settings(max_examples=20)
@given(st.integers(0, 2**32 - 1))
def test_grammar_strings_are_derivable(seed: int) -> None:
    for string in sample_strings(np.random.default_rng(seed), 3):
        text = "".join(to_text(string))
        assert 150 <= len(text) <= 400
        assert derives(text)


def test_non_derivable_string_is_rejected_by_the_checker() -> None:
    text = "".join(to_text(sample_strings(np.random.default_rng(0), 1)[0]))
    assert not derives(text[:-1] + ("a" if text[-1] != "a" else "b"))
    assert not derives(text + "a")


def test_window_is_a_contiguous_substring() -> None:
    windows = Windows(np.random.default_rng(1), 50)
    strings = "|".join("".join(to_text(s)) for s in sample_strings(np.random.default_rng(1), WINDOW_BLOCK))
    for _ in range(WINDOW_BLOCK // 2):  # the windows of the stream's first block of strings
        w = windows.next()
        assert len(w) == 50 and set(w.tolist()) <= {0, 1, 2}
        assert "".join(to_text(w)) in strings


def test_string_lengths_have_the_grammars_expected_mean() -> None:
    @functools.cache
    def expected_length(symbol: str) -> float:
        if symbol in TERMINALS:
            return 1.0
        return sum(0.5 * sum(expected_length(part) for part in rhs) for rhs in RULES[symbol])

    lengths = np.array([len(s) for s in sample_strings(np.random.default_rng(3), 4000)])
    assert abs(lengths.mean() - expected_length("s")) < 4 * lengths.std() / np.sqrt(len(lengths))


@given(st.integers(0, 10_000), st.sampled_from(["a", "b", "c"]))
def test_count_labels_equal_an_independent_recount(seed: int, operand: str) -> None:
    config = tiny_task_config(window=20, region=12)
    s = sample(config, SampleSpec(family="count", operand=operand), np.random.default_rng(seed))
    assert s.answer == s.text[-12:].count(operand)
    assert s.tokens[3] == "12" and s.tokens[-2] == str(s.answer) and s.tokens[-3] == "<art>"


@given(st.integers(0, 10_000))
def test_index_labels_equal_an_independent_search(seed: int) -> None:
    config = tiny_task_config(window=20, region=12, k=2)
    s = sample(config, SampleSpec(family="index", operand="b"), np.random.default_rng(seed))
    back = s.text[::-1]
    hits = [i + 1 for i, t in enumerate(back) if t == "b"]
    assert s.answer == (hits[1] if len(hits) >= 2 else 0)


def test_bigram_and_token_families() -> None:
    config = tiny_task_config(window=20, region=12, families=("count_bigram", "index_bigram", "token"))
    rng = np.random.default_rng(3)
    for _ in range(30):
        s = sample(config, SampleSpec(family="count_bigram", operand="ab"), rng)
        tail = "".join(s.text[-12:])
        assert s.answer == sum(tail[i : i + 2] == "ab" for i in range(len(tail) - 1))
        t = sample(config, SampleSpec(family="token"), rng)
        assert t.answer == t.text[-int(t.tokens[3])]


@given(st.integers(0, 10_000), st.integers(0, 3))
def test_count_correlation_holds_and_keeps_count_a(seed: int, q: int) -> None:
    rng = np.random.default_rng(seed)
    text = Windows(rng, 40).next()
    edited = plant_count_correlation(text, "a", "b", q, 24, rng)
    if edited is None:
        return
    tail, orig = edited[-24:], text[-24:]
    assert (tail == 1).sum() == (tail == 0).sum() + q
    assert ((orig == 0) == (tail == 0)).all()
    assert (edited[:-24] == text[:-24]).all()


@given(st.integers(0, 10_000))
def test_index_correlation_holds(seed: int) -> None:
    from procedural_tasks.pcfg_tasks import index_of_occurrence

    rng = np.random.default_rng(seed)
    text = Windows(rng, 40).next()
    edited = plant_index_correlation(text, "a", "b", 1, 3, rng)
    if edited is None:
        return
    assert index_of_occurrence(edited, "b", 3) == index_of_occurrence(edited, "a", 3) + 1
    assert index_of_occurrence(edited, "a", 3) == index_of_occurrence(text, "a", 3)


@pytest.mark.parametrize("c", [0.0, 0.3, 1.0])
def test_correlated_fraction_is_within_a_binomial_bound(c: float) -> None:
    task = PCFGTask(tiny_task_config(window=24, region=16))
    n = 1500
    batch = task.batch(SampleSpec(family="count", operand="b", c=c), n, seed=0, step=0)
    frac = float(batch.labels["correlated"].float().mean())
    assert abs(frac - c) <= 4 * np.sqrt(c * (1 - c) / n) + 1e-9
    corr = batch.labels["correlated"].bool()
    assert (batch.labels["count_b"][corr] == batch.labels["count_a"][corr] + 1).all()


def test_plain_cte0_meets_the_relation_by_chance_and_strict_cte0_never_does() -> None:
    task = PCFGTask(tiny_task_config(window=48, region=32))
    spec = SampleSpec(family="count", operand="b", c=0.0)
    plain = task.batch(spec, 1000, seed=0, step=0).labels
    chance = float((plain["count_b"] == plain["count_a"] + 1).float().mean())
    assert chance > 0.05  # a count(a) + 1 wrapper scores this much on the plain set
    strict = task.batch(dataclasses.replace(spec, strict=True), 1000, seed=0, step=0).labels
    assert not (strict["count_b"] == strict["count_a"] + 1).any()
    assert len(set(strict["count_b"].tolist())) >= 4  # still a spread of answers


def test_correlation_keeps_the_label_distribution_close() -> None:
    task = PCFGTask(tiny_task_config(window=48, region=32))
    plain = task.batch(SampleSpec(family="count", operand="b", c=0.0), 2000, seed=0, step=0).labels["count_b"]
    corr = task.batch(SampleSpec(family="count", operand="b", c=1.0), 2000, seed=0, step=1).labels["count_b"]
    p = np.bincount(plain.numpy(), minlength=33) / 2000
    r = np.bincount(corr.numpy(), minlength=33) / 2000
    assert 0.5 * np.abs(p - r).sum() < 0.15  # total-variation distance (0.075 measured)
    assert abs(plain.float().mean() - corr.float().mean()) < 1.0


def test_batches_are_a_pure_function_of_seed_and_step() -> None:
    task = PCFGTask(tiny_task_config())
    a = task.batch(SampleSpec(), 8, seed=1, step=5)
    b = task.batch(SampleSpec(), 8, seed=1, step=5)
    c = task.batch(SampleSpec(), 8, seed=1, step=6)
    assert (a.tokens == b.tokens).all() and not (a.tokens == c.tokens).all()


def test_prior_sampling_respects_zero_probabilities() -> None:
    task = PCFGTask(tiny_task_config(prior=(0.0, 1.0, 0.0)))
    batch = task.batch(SampleSpec(), 200, seed=0, step=0)
    operands = {task.vocab.tokens[i] for i in batch.tokens[:, 2].tolist()}
    assert operands == {"b"}


def test_eval_shortcut_is_count_a_plus_q() -> None:
    task = PCFGTask(tiny_task_config(window=24, region=16))
    es = task.eval_set("b1", SampleSpec(family="count", operand="b", c=1.0), 200, seed=0)
    assert (es.shortcut_answers == es.batch.answers).all()


def test_vocab_round_trip_and_unknown_token() -> None:
    task = PCFGTask(tiny_task_config())
    s = sample(task.config, SampleSpec(family="count", operand="a"), np.random.default_rng(0))
    assert task.vocab.decode(task.vocab.encode(s.tokens)) == s.tokens
    with pytest.raises(DataError, match="not in the vocabulary"):
        task.vocab.encode(["zzz"])
    with pytest.raises(DataError, match="out of the vocabulary"):
        task.vocab.decode([len(task.vocab)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 10, "region": 20}, "region 20 must be between"),
        ({"families": ("counting",)}, "unknown task family"),
        ({"prior": (0.9, 0.2, 0.0)}, "sums to 1.1"),
    ],
)
def test_bad_task_configs_are_rejected(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        PCFGTaskConfig(**kwargs)


def test_parse_prior() -> None:
    assert parse_prior("low") == (0.999, 0.001, 0.0)
    assert parse_prior("0.9,0.1,0") == (0.9, 0.1, 0.0)
    with pytest.raises(ConfigError):
        parse_prior("0.5,x,0.5")


def test_evaluation_sets_are_built_once_per_process_and_equal_a_fresh_build():
    config = tiny_task_config()
    spec = SampleSpec(family="count", operand="b", c=1.0)
    first = PCFGTask(config).eval_set("count_b@cte1", spec, 40, seed=3)
    assert PCFGTask(config).eval_set("count_b@cte1", spec, 40, seed=3) is first  # another task, same config
    assert PCFGTask(config).eval_set("count_b@cte1", spec, 40, seed=4) is not first
    _eval_set.cache_clear()
    _acceptance.cache_clear()
    fresh = PCFGTask(config).eval_set("count_b@cte1", spec, 40, seed=3)
    assert fresh is not first
    assert torch.equal(fresh.batch.tokens, first.batch.tokens)
    assert torch.equal(fresh.shortcut_answers, first.shortcut_answers)
    assert not PCFGTask(config).acceptance(spec).flags.writeable  # shared, so read-only


def test_stage_recipes_evaluate_fine_tuning_at_doubling_steps_and_revival_log_spaced():
    sp = study_preset("cpu")
    finetune = sp.train_config("finetune", lr=1e-4)
    assert finetune.eval_steps == (2, 4, 8, 16, 32, 63, 125, 250)
    evaluated = [s for s in range(sp.finetune_steps + 1) if finetune.is_eval_step(s)]
    assert evaluated == [0, *finetune.eval_steps]
    reverse = sp.train_config("reverse", lr=1e-4)
    assert reverse.eval_steps[0] == 1 and reverse.eval_steps[-1] == sp.reverse_steps
    pretrain = sp.train_config("pretrain", lr=1e-3)
    assert pretrain.eval_steps is None and pretrain.eval_every == sp.pretrain_steps // 4
