"""Tracr Counter and Max-identifier: references, samplers, the spurious-correlation edit, and the
precompiled models rebuilt as TransformerBridges.

One table of (program, letters, expected) feeds both the reference test and the compiled-model test
(tracr's compiler/test_cases.py idea). The test against tracr itself (``tracr_own``) compiles the RASP
source again and compares it with the shipped weights and tracr's own forward pass; it needs the ``tracr``
extra, which the README's set-up and CI install, and skips where tracr is missing.
"""

import itertools
import json
import math
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interp import weights
from interp.errors import CheckpointError, ConfigError, DataError
from procedural_tasks import tracr_compilation, tracr_models
from procedural_tasks import tracr_programs as tp
from procedural_tasks.tracr_sampling import make_dataset, sample_letters

COUNTER = tp.PROGRAMS["counter"]
MAX_ID = tp.PROGRAMS["max_identifier"]

CASES = [
    ("counter", "a", 1),
    ("counter", "b", 0),
    ("counter", "aaa", 3),
    ("counter", "abcabc", 2),
    ("counter", "ihgfedcba", 1),
    ("counter", "bcdefghibcdefghi", 0),
    ("counter", "ab" * 22 + "a", 23),
    ("counter", "a" * 45, 45),
    ("counter", "i" * 45, 0),
    ("counter", "a" * 10 + "b" * 35, 10),
    ("max_identifier", "abcde", "e"),
    ("max_identifier", "edcba", "e"),
    ("max_identifier", "abcdefghij", "e"),
    ("max_identifier", "jihgfedcba", "e"),
    ("max_identifier", "zyxwvutsrq", "u"),
    ("max_identifier", "qwertyuiop", "q"),
    ("max_identifier", "mzaqkxbtcl", "l"),
    ("max_identifier", "vwxyz", "z"),
]


@pytest.fixture(scope="module")
def compiled():
    """Both models, loaded once; tests must not modify them."""
    torch.set_num_threads(1)
    return {name: tracr_models.load_compiled(name) for name in tp.PROGRAMS}


def _run(model, tokens: np.ndarray, batch: int = 2000) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model(torch.from_numpy(tokens[i : i + batch])) for i in range(0, len(tokens), batch)]
        )


# ---- References


@pytest.mark.parametrize("name,letters,expected", CASES)
def test_reference_matches_table(name, letters, expected):
    assert tp.reference_output(tp.PROGRAMS[name], list(letters)) == expected


def test_reference_operands_and_order():
    assert tp.reference_counter("aabbb", "b") == 3
    assert tp.reference_max_identifier("qwertyuiop", 1) == "e"
    assert tp.reference_max_identifier("qwertyuiop", 10) == "y"
    assert tp.reference_max_identifier("cab", 1, vocab="cba") == "c"


@pytest.mark.parametrize(
    "letters,order", [("aab", 1), ("abc", 4), ("abc", 0), ("ab$", 1)], ids=["dup", "big", "zero", "oov"]
)
def test_reference_max_identifier_rejects_bad_input(letters, order):
    with pytest.raises(DataError):
        tp.reference_max_identifier(letters, order)


# ---- Compiled models against the same table and against random inputs


@pytest.mark.parametrize("name", list(tp.PROGRAMS))
def test_compiled_matches_table(compiled, name):
    model, info = compiled[name]
    cases = [(letters, expected) for program, letters, expected in CASES if program == name]
    logits = _run(model, info.encode([letters for letters, _ in cases]).numpy())
    values = info.decode_output(logits)
    for (letters, expected), row in zip(cases, values, strict=True):
        assert list(row[1 : len(letters) + 1]) == [expected] * len(letters), letters


def test_counter_answers_every_count_from_0_to_45_on_45_letter_inputs(compiled):
    model, info = compiled["counter"]
    n = info.config.max_seq_len
    assert n == 45
    rng = np.random.default_rng(5)
    others = [letter for letter in info.config.vocab if letter != "a"]
    rows = []
    for count in range(n + 1):
        row = ["a"] * count + list(rng.choice(others, size=n - count))
        rows.append([row[i] for i in rng.permutation(n)])
    values = info.decode_output(_run(model, info.encode(rows).numpy()))
    for count, row in enumerate(values):
        assert list(row[1:]) == [count] * n, count


def test_counter_matches_reference_on_1k_inputs(compiled):
    model, info = compiled["counter"]
    data = make_dataset(info.config, 1000, seed=11)
    predictions = _run(model, data.tokens).argmax(-1).numpy()
    assert (predictions[:, 1:] == data.labels_pt[:, None]).all()


@pytest.mark.slow
def test_counter_matches_reference_on_10k_inputs(compiled):
    model, info = compiled["counter"]
    data = make_dataset(info.config, 10_000, seed=12)
    predictions = _run(model, data.tokens).argmax(-1).numpy()
    assert (predictions[:, 1:] == data.labels_pt[:, None]).all()


def test_max_identifier_matches_reference_on_10k_inputs(compiled):
    model, info = compiled["max_identifier"]
    data = make_dataset(info.config, 10_000, seed=13)
    predictions = _run(model, data.tokens).argmax(-1).numpy()
    assert (predictions[:, 1:] == data.labels_pt[:, None]).all()


@pytest.mark.parametrize("name", list(tp.PROGRAMS))
def test_padded_inputs_keep_answers_at_letter_positions(compiled, name):
    model, info = compiled[name]
    rng = np.random.default_rng(3)
    low = info.config.operand_pt if name == "max_identifier" else 1
    rows = [
        sample_letters(
            info.config, 1, rng=rng, n_letters=int(rng.integers(low, info.config.max_seq_len + 1))
        )[0][0]
        for _ in range(300)
    ]
    values = info.decode_output(_run(model, info.encode(rows).numpy()))
    for row, got in zip(rows, values, strict=True):
        assert set(got[1 : len(row) + 1].tolist()) == {tp.reference_output(info.config, list(row))}


def test_model_shapes_and_info(compiled):
    counter, counter_info = compiled["counter"]
    assert counter.cfg.n_layers == 3 and counter.cfg.n_heads == 1 and counter.cfg.normalization_type is None
    assert counter_info.input_encoding == tp.input_encoding_for(COUNTER)
    assert len(counter_info.residual_labels) == counter.cfg.d_model
    assert counter_info.output_label.startswith("counter_")
    _, max_info = compiled["max_identifier"]
    assert max_info.versions["tracr-pypi"] == "1.0.0"


def test_decode_output_and_encode_reject_bad_input():
    with pytest.raises(DataError):
        tp.encode(["a" * 46], config=COUNTER)
    with pytest.raises(DataError):
        tp.encode(["abz"], config=COUNTER)
    with pytest.raises(DataError):
        tp.decode_output(np.zeros((2, 5)), config=COUNTER)


# ---- The spurious-correlation edit


def _recount(config, letters: np.ndarray, operand) -> np.ndarray:
    """An independent recount: vectorised for Counter, a sort by vocabulary index for Max-identifier."""
    if isinstance(config, tp.CounterConfig):
        return (letters == operand).sum(axis=1)
    index = np.vectorize({letter: i for i, letter in enumerate(config.vocab)}.__getitem__)(letters)
    return np.sort(index, axis=1)[:, operand - 1]


@settings(deadline=None, max_examples=20)
@given(
    seed=st.integers(0, 2**31 - 1),
    c_tr=st.sampled_from([0.0, 0.2, 0.5, 0.8, 0.9, 1.0]),
    name=st.sampled_from(list(tp.PROGRAMS)),
)
def test_correlated_fraction_and_labels(seed, c_tr, name):
    config = tp.PROGRAMS[name]
    n = 400
    data = make_dataset(config, n, seed=seed, c_tr=c_tr, q=1)
    k = int(data.correlated.sum())
    sd = math.sqrt(n * c_tr * (1 - c_tr))
    assert abs(k - n * c_tr) <= 5 * sd
    ft = _recount(config, data.letters, data.operand_ft)
    pt = _recount(config, data.letters, config.operand_pt)
    assert ((ft - pt)[data.correlated] == 1).all()
    outputs = np.array(list(tp.output_encoding_for(config)))
    if isinstance(config, tp.CounterConfig):
        assert (outputs[data.labels_pt] == pt).all() and (outputs[data.labels_ft] == ft).all()
    else:
        vocab = np.array(config.vocab)
        assert (outputs[data.labels_pt] == vocab[pt]).all() and (outputs[data.labels_ft] == vocab[ft]).all()
    if isinstance(config, tp.MaxIdentifierConfig):
        assert all(len(set(row)) == len(row) for row in data.letters.tolist())


@pytest.mark.parametrize(
    "name,operand_ft,q",
    [("counter", "b", 2), ("counter", "c", -1), ("max_identifier", 7, 3), ("max_identifier", 4, -2)],
)
def test_correlated_samples_hold_other_q(name, operand_ft, q):
    config = tp.PROGRAMS[name]
    letters, correlated = sample_letters(
        config, 300, rng=np.random.default_rng(5), c_tr=1.0, operand_ft=operand_ft, q=q
    )
    assert correlated.all()
    assert {tp.spurious_difference(config, row, operand_ft=operand_ft) for row in letters.tolist()} == {q}


@pytest.mark.parametrize(
    "config,operand_ft,q",
    [
        (tp.CounterConfig(vocab=tuple("abc"), max_seq_len=3), "b", 1),
        (tp.MaxIdentifierConfig(vocab=tuple("abcdef"), max_seq_len=4, operand_pt=2), 3, 2),
    ],
    ids=["counter", "max_identifier"],
)
def test_correlated_samples_are_uniform_over_the_constraint(config, operand_ft, q):
    """On a small vocabulary, every input satisfying the constraint is drawn about equally often."""
    n_letters = config.max_seq_len
    repeat = isinstance(config, tp.CounterConfig)
    inputs = (
        itertools.product(config.vocab, repeat=n_letters)
        if repeat
        else itertools.permutations(config.vocab, n_letters)
    )
    support = {row for row in inputs if tp.spurious_difference(config, row, operand_ft=operand_ft) == q}
    n = 200 * len(support)
    letters, _ = sample_letters(config, n, rng=np.random.default_rng(9), c_tr=1.0, operand_ft=operand_ft, q=q)
    counts = Counter(map(tuple, letters.tolist()))
    assert set(counts) == support
    chi2 = sum((counts[row] - 200) ** 2 / 200 for row in support)
    dof = len(support) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("counter", {"c_tr": 1.5}),
        ("counter", {"c_tr": 0.5, "operand_ft": "a"}),
        ("counter", {"c_tr": 0.5, "q": 46}),
        ("max_identifier", {"c_tr": 0.5, "operand_ft": 6, "q": -1}),
        ("max_identifier", {"c_tr": 0.5, "operand_ft": 7, "q": 1}),
        ("max_identifier", {"c_tr": 0.5, "operand_ft": 6, "q": 18}),
        ("max_identifier", {"n_letters": 4}),
    ],
)
def test_infeasible_sampling_requests_raise(name, kwargs):
    with pytest.raises(ConfigError):
        sample_letters(tp.PROGRAMS[name], 10, rng=np.random.default_rng(0), **kwargs)


def test_same_seed_same_data():
    first, second = (make_dataset(COUNTER, 200, seed=4, c_tr=0.5) for _ in range(2))
    assert np.array_equal(first.tokens, second.tokens) and np.array_equal(first.correlated, second.correlated)


def test_configs_validate_and_round_trip():
    for config in tp.PROGRAMS.values():
        assert (
            tp.program_config_from_dict(json.loads(json.dumps(tp.program_config_to_dict(config)))) == config
        )
    with pytest.raises(ConfigError):
        tp.CounterConfig(operand_pt="z")
    with pytest.raises(ConfigError):
        tp.MaxIdentifierConfig(max_seq_len=27)
    with pytest.raises(ConfigError):
        tp.program_config_from_dict({"program": "counter", "operand": "a"})


# ---- Missing and corrupted weight files


@pytest.fixture
def weights_copy(tmp_path):
    for path in tracr_models.WEIGHTS_DIR.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_unknown_program_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of"):
        tracr_models.load_compiled("sorter")


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_missing_file_is_a_checkpoint_error(weights_copy, suffix):
    (weights_copy / f"counter{suffix}").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        tracr_models.load_compiled("counter", weights_dir=weights_copy)


def test_corrupted_weights_are_a_checkpoint_error(weights_copy):
    path = weights_copy / "max_identifier.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupted"):
        tracr_models.load_compiled("max_identifier", weights_dir=weights_copy)


def test_corrupted_json_is_a_checkpoint_error(weights_copy):
    path = weights_copy / "max_identifier.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(CheckpointError, match="corrupted"):
        tracr_models.load_compiled("max_identifier", weights_dir=weights_copy)


def test_mismatched_shapes_are_a_checkpoint_error(weights_copy):
    """Weights from the Counter under the Max-identifier's JSON: readable, but the shapes disagree."""
    meta = json.loads((weights_copy / "max_identifier.json").read_text())
    counter_meta = json.loads((weights_copy / "counter.json").read_text())
    meta["weights_sha256"] = counter_meta["weights_sha256"]
    (weights_copy / "max_identifier.json").write_text(json.dumps(meta))
    shutil.copy(weights_copy / "counter.safetensors", weights_copy / "max_identifier.safetensors")
    with pytest.raises(CheckpointError, match="shape"):
        tracr_models.load_compiled("max_identifier", weights_dir=weights_copy)


# ---- Against tracr's own compiled model (runs only where tracr is installed)


@pytest.mark.parametrize("name", list(tp.PROGRAMS))
def test_tracr_own_model_equals_converted(compiled, name):
    pytest.importorskip("tracr")
    jnp = pytest.importorskip("jax.numpy")
    model, info = compiled[name]
    tracr_model = tracr_compilation.compile_program(info.config)
    fresh, _ = tracr_compilation.export_compiled(tracr_model, info.config)
    stored, _ = tracr_models.read_compiled(name)
    assert fresh.keys() == stored.keys()
    assert all(np.array_equal(fresh[key], stored[key]) for key in fresh)

    rng = np.random.default_rng(21)
    letters, _ = sample_letters(info.config, 500, rng=rng)
    short = [
        row[: int(rng.integers(info.config.max_seq_len // 2, info.config.max_seq_len))]
        for row in letters[:50]
    ]
    for tokens in (info.encode(letters).numpy(), info.encode(short).numpy()):
        output = tracr_model.forward(tracr_model.params, jnp.asarray(tokens))
        tracr_classes = np.asarray(output.unembedded_output)
        residual = torch.tensor(np.asarray(output.transformer_output.output))
        tracr_logits = residual @ tracr_models.tracr_state_dict(stored, info)[weights.UNEMBED].T
        logits = _run(model, tokens)
        assert np.array_equal(logits.argmax(-1).numpy(), tracr_classes)
        torch.testing.assert_close(logits, tracr_logits, rtol=1e-5, atol=1e-5)
    for letters_case, expected in [(letters, want) for program, letters, want in CASES if program == name][
        :3
    ]:
        decoded = tracr_model.apply([tp.BOS, *letters_case]).decoded
        assert decoded[1:] == [expected] * len(letters_case)
