"""collect_activations equals run_with_cache at the kept position and keeps only [example, d]."""

import pytest
import torch

from interp import hooks
from interp.activations import collect_activations
from interp.batches import Batch, EvalSet
from interp.errors import ConfigError, DataError
from interp.models import build_model
from tests.conftest import tiny_model_config


@pytest.fixture(scope="module")
def model():
    return build_model(tiny_model_config())


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    n, pos = 37, 20
    return Batch(
        tokens=torch.randint(0, 64, (n, pos), generator=gen),
        answer_pos=torch.randint(10, pos - 1, (n,), generator=gen),
        answers=torch.randint(0, 64, (n,), generator=gen),
        labels={"y": torch.arange(n)},
    )


NAMES = [hooks.embedding_output(), hooks.resid_post(0), hooks.mlp_post(1), hooks.attn_pattern(1)]


def _reference(model, batch, names):
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens, names_filter=names)
    return {name: cache[name] for name in names}


def test_answer_position_equals_run_with_cache(model, batch):
    result = collect_activations(model, batch, hook_names=NAMES, batch_size=8)
    ref = _reference(model, batch, NAMES)
    rows = torch.arange(len(batch))
    for name in NAMES:
        if name == hooks.attn_pattern(1):
            expected = ref[name][rows, :, batch.answer_pos]  # query position
        else:
            expected = ref[name][rows, batch.answer_pos]
        torch.testing.assert_close(result[name], expected, rtol=0, atol=1e-6)
    assert torch.equal(result.labels["y"], batch.labels["y"])
    assert torch.equal(result.answers, batch.answers)


def test_kept_memory_has_no_sequence_dimension(model, batch):
    result = collect_activations(model, batch, hook_names=[hooks.resid_post(1), hooks.mlp_post(0)])
    assert result[hooks.resid_post(1)].shape == (len(batch), 16)
    assert result[hooks.mlp_post(0)].shape == (len(batch), 32)
    assert result.to_json()["shapes"] == {hooks.resid_post(1): [37, 16], hooks.mlp_post(0): [37, 32]}
    assert set(result.activations) == {hooks.resid_post(1), hooks.mlp_post(0)}


@pytest.mark.parametrize(
    ("position", "select"),
    [
        (None, lambda a, b: a),
        (3, lambda a, b: a[:, 3]),
        (-1, lambda a, b: a[:, -1]),
        ("answer+1", lambda a, b: a[torch.arange(len(b)), b.answer_pos + 1]),
        ("mean_last_10", lambda a, b: a[:, -10:].mean(1)),
    ],
)
def test_positions(model, batch, position, select):
    name = hooks.resid_post(0)
    result = collect_activations(model, batch, hook_names=[name], position=position, batch_size=16)
    expected = select(_reference(model, batch, [name])[name], batch)
    torch.testing.assert_close(result[name], expected, rtol=0, atol=1e-5)


def test_streams_an_iterator_of_eval_sets_and_leaves_mode(model, batch):
    model.train()
    parts = iter([EvalSet("a", batch.slice(0, 20)), batch.slice(20, 37)])
    result = collect_activations(model, parts, hook_names=[hooks.resid_post(0)], batch_size=7)
    whole = collect_activations(model, batch, hook_names=[hooks.resid_post(0)])
    torch.testing.assert_close(result[hooks.resid_post(0)], whole[hooks.resid_post(0)], rtol=0, atol=1e-6)
    assert model.training


def test_bad_requests_raise(model, batch):
    with pytest.raises(ConfigError, match="did you mean"):
        collect_activations(model, batch, hook_names=["blocks.0.hook_resid_pots"])
    with pytest.raises(ConfigError):
        collect_activations(model, batch, hook_names=[hooks.resid_post(0)], position="middle")
    with pytest.raises(DataError):
        collect_activations(model, batch, hook_names=[hooks.resid_post(0)], position=99)
    with pytest.raises(ConfigError):
        collect_activations(model, batch, hook_names=[])
