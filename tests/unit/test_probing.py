"""Probes recover planted linear features, sit at chance on random labels, and their controls behave."""

import dataclasses
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interp import hooks
from interp.batches import Batch
from interp.config import from_json, to_json
from interp.errors import ConfigError, DataError
from interp.models import build_model
from interp.probing import (
    ProbeConfig,
    _train_many,
    compare_probes,
    control_labels,
    probe_layers,
    train_probe,
)
from tests.conftest import tiny_model_config

FAST = ProbeConfig(steps=300, lr=1e-2, batch_size=128)

# A value outside a Literal: ConfigError, or a TypeError first when jaxtyping checks are on.
LITERAL_ERRORS = (ConfigError, TypeError)


def planted(n=600, d=16, k=5, *, ordinal=False, seed=0):
    """Gaussian features where the label is a class direction each (or a 1-D ordinal scale)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=gen)
    x = torch.randn(n, d, generator=gen)
    if ordinal:
        u = torch.randn(d, generator=gen)
        return x + 4 * y[:, None].float() * u / u.norm(), y
    return x + 4 * torch.randn(k, d, generator=gen)[y], y


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_probe_recovers_planted_feature(backend):
    x, y = planted()
    result = train_probe(x, y, config=dataclasses.replace(FAST, backend=backend))
    assert result.test_accuracy >= 0.95
    assert result.n_train + result.n_test == 600 and result.n_test == 120
    assert result.majority_floor < 0.35


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_probe_is_at_chance_on_random_labels(backend):
    x, _ = planted()
    y = torch.randint(0, 5, (600,), generator=torch.Generator().manual_seed(9))
    result = train_probe(x, y, config=dataclasses.replace(FAST, backend=backend))
    assert result.test_accuracy <= result.majority_floor + 0.1


def test_selectivity_high_for_ordinal_and_zero_for_lookup_features():
    """A 1-D ordinal code cannot fit random unions of its classes; one direction per class can.

    With six input types a control draw is sometimes contiguous by chance, so the ordinal case is
    judged on the mean over draws.
    """
    config = ProbeConfig(backend="sklearn", standardize=True)
    x_ord, y = planted(n=500, k=6, ordinal=True)
    x_dir, _ = planted(n=500, k=6)
    ordinal = []
    for seed in range(3):
        ctrl = control_labels(y, y, seed=seed)
        task_ord, task_dir, ctrl_ord, ctrl_dir = _train_many(
            [x_ord, x_dir, x_ord, x_dir], [y, y, ctrl, ctrl], 6, config
        )
        ordinal.append(task_ord.test_accuracy - ctrl_ord.test_accuracy)
        assert abs(task_dir.test_accuracy - ctrl_dir.test_accuracy) <= 0.03
    assert sum(ordinal) / len(ordinal) > 0.1


def test_control_labels_are_a_function_of_the_type():
    types = torch.tensor([0, 1, 0, 2, 1, 2, 0])
    ctrl = control_labels(types, types * 10, seed=0)
    for t in range(3):
        assert ctrl[types == t].unique().numel() == 1
    assert set(ctrl.tolist()) <= {0, 10, 20}


def test_batched_probes_equal_separate_training():
    x1, y = planted(seed=1)
    x2, _ = planted(seed=2, d=8)
    together = _train_many([x1, x2[:, :8]], [y, y], 5, FAST)
    alone = [train_probe(x1, y, config=FAST), train_probe(x2[:, :8], y, config=FAST)]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-4, atol=1e-5)
        assert a.test_accuracy == b.test_accuracy


def test_study_schedule_decays_at_half_three_quarters_and_seven_eighths():
    config = ProbeConfig()
    assert config.steps == 4000 and config.lr == 1e-3
    lrs = [config.lr_at(s) for s in (0, 1999, 2000, 3000, 3500, 3999)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-6, 1e-6])


def _token_batch(n=400, seed=0):
    """Tokens drawn from 8 ids; label tok = the token at the answer position; flags = presence in the last 10."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 8, (n, 20), generator=gen)
    answer_pos = torch.full((n,), 12)
    last10 = tokens[:, -10:]
    flags = torch.stack([(last10 == 0).any(1), (last10 == 1).any(1)], 1).long()
    return Batch(
        tokens=tokens,
        answer_pos=answer_pos,
        answers=tokens[:, 13],
        labels={"tok": tokens[:, 12], "flags": flags},
    )


def test_probe_layers_reads_token_identity_from_the_embedding_output():
    model = build_model(tiny_model_config())
    result = probe_layers(
        model,
        _token_batch(),
        hook_names=hooks.residual_stream(2),
        label="tok",
        position="answer",
        config=FAST,
    )
    assert result.task[hooks.embedding_output()].test_accuracy >= 0.95
    assert set(result.selectivity) == set(hooks.residual_stream(2))
    rows = result.to_json()["layers"]
    assert [r["hook"] for r in rows] == hooks.residual_stream(2)
    assert {"test_accuracy", "control_accuracy", "selectivity", "majority_floor"} <= set(rows[0])


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_multilabel_probe_on_mean_of_last_positions(backend):
    model = build_model(tiny_model_config())
    config = dataclasses.replace(FAST, backend=backend, multilabel=True, steps=500, lr=3e-2, standardize=True)
    result = probe_layers(
        model,
        _token_batch(),
        hook_names=[hooks.embedding_output()],
        label="flags",
        position="mean_last_10",
        config=config,
        control=False,
    )
    probe = result.task[hooks.embedding_output()]
    assert len(probe.feature_accuracy) == 2
    assert probe.test_accuracy >= 0.9 and probe.test_accuracy > probe.majority_floor + 0.1


def test_compare_probes_runs_every_model_on_the_same_split():
    models = {"a": build_model(tiny_model_config()), "b": build_model(tiny_model_config(seed=3))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare_probes(
            models,
            _token_batch(n=100),
            hook_names=[hooks.resid_post(1)],
            label="tok",
            config=FAST,
            control=False,
        )
    assert set(result.results) == {"a", "b"}
    assert (
        result.results["a"].task[hooks.resid_post(1)].n_test
        == result.results["b"].task[hooks.resid_post(1)].n_test
    )
    assert "a" in result.to_json()


def test_bad_inputs():
    with pytest.raises(ConfigError):
        ProbeConfig(test_frac=0.0)
    with pytest.raises(LITERAL_ERRORS):
        ProbeConfig(backend="keras")
    x, y = planted(n=50)
    with pytest.raises((DataError, TypeError)):  # jaxtyping's shape check fires first when enabled
        train_probe(x, y[:10], config=FAST)
    with pytest.raises(DataError):
        train_probe(x, y, config=dataclasses.replace(FAST, n_classes=3))
    model = build_model(tiny_model_config())
    with pytest.raises(DataError, match="no label"):
        probe_layers(
            model, _token_batch(n=20), hook_names=[hooks.resid_post(0)], label="count_a", config=FAST
        )


@settings(max_examples=25)
@given(
    backend=st.sampled_from(["torch", "sklearn"]),
    steps=st.integers(1, 10_000),
    lr=st.floats(1e-6, 1.0),
    decay_at=st.lists(st.floats(0.01, 0.99), max_size=4).map(tuple),
    n_classes=st.none() | st.integers(2, 500),
    multilabel=st.booleans(),
    test_frac=st.floats(0.01, 0.99),
)
def test_probe_config_round_trips_through_json(
    backend, steps, lr, decay_at, n_classes, multilabel, test_frac
):
    config = ProbeConfig(
        backend=backend,
        steps=steps,
        lr=lr,
        decay_at=decay_at,
        n_classes=n_classes,
        multilabel=multilabel,
        test_frac=test_frac,
    )
    assert from_json(ProbeConfig, to_json(config)) == config
