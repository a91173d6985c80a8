"""Saliency pruning finds a planted wrong-answer neuron, prunes exactly what it says, and copies."""

import copy

import pytest
import torch

from interp import hooks
from interp.batches import Batch, EvalSet
from interp.config import from_json, to_json
from interp.errors import ConfigError
from interp.evaluation import evaluate, predict
from interp.masks import MaskConfig, learn_mask
from interp.models import build_model
from interp.pruning import (
    magnitude_scores,
    prune_by_saliency,
    prune_units,
    pruning_curve,
    random_scores,
    saliency_scores,
    wanda_scores,
)
from tests.conftest import tiny_model_config

LAYER, NEURON, WRONG = 1, 5, 7
PLANTED = f"L{LAYER}.mlp.n{NEURON}"

# A value outside a Literal: ConfigError, or a TypeError first when jaxtyping checks are on.
LITERAL_ERRORS = (ConfigError, TypeError)


def _tokens(n=160, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (n, 16), generator=gen)


def planted_model(tokens=None):
    """(model, clean_batch): the answers are what the model says without one neuron, which the model
    instead uses to push every answer to a wrong class (a one-neuron 'wrapper')."""
    model = build_model(tiny_model_config())
    with torch.no_grad():
        model.state_dict()["unembed.weight"].mul_(10)  # confident answers
    clean = prune_units(model, [PLANTED])
    tokens = _tokens() if tokens is None else tokens
    positions = torch.full((len(tokens),), 15)
    preds, _ = predict(clean, Batch(tokens=tokens, answer_pos=positions, answers=torch.zeros_like(positions)))
    batch = Batch(tokens=tokens, answer_pos=positions, answers=preds)
    state = clean.state_dict()
    with torch.no_grad():
        state[f"blocks.{LAYER}.mlp.in.weight"][NEURON] = 0
        state[f"blocks.{LAYER}.mlp.in.bias"][NEURON] = 3.0  # always on
        wrong = state["unembed.weight"][WRONG]
        state[f"blocks.{LAYER}.mlp.out.weight"][:, NEURON] = 3 * wrong / wrong.norm()
    return clean, batch


def pretrained_and_planted(tokens=None):
    """(pretrained, finetuned, batch): the model before and after the one-neuron wrapper is planted."""
    model, batch = planted_model(tokens)
    return prune_units(model, [PLANTED]), model, batch


@pytest.fixture(scope="module")
def planted():
    return planted_model()


def test_planted_neuron_is_the_top_saliency_unit_and_pruning_it_restores_accuracy(planted):
    model, batch = planted
    eval_set = EvalSet("pt", batch)
    assert evaluate(model, eval_set).accuracy < 0.1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = prune_by_saliency(model, batch, k=1, level="neuron")
    assert result.units == (PLANTED,)
    assert evaluate(result.model, eval_set).accuracy == 1.0
    assert result.model is not model
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} of the original model changed"


def test_row_and_weight_levels_point_into_the_planted_neuron(planted):
    model, batch = planted
    for level in ("row", "weight"):
        top = saliency_scores(model, batch, level=level).top(3)
        assert all(name.startswith(f"L{LAYER}.mlp.W_out") for name in top)
        assert all(name.endswith(f",{NEURON}]") for name in top) if level == "weight" else True


def test_scores_are_consistent_across_levels(planted):
    model, batch = planted
    weight = saliency_scores(model, batch, level="weight")
    row = saliency_scores(model, batch, level="row")
    neuron = saliency_scores(model, batch, level="neuron")
    by_weight = {}
    for i, score in enumerate(weight.scores.tolist()):
        name = weight.name(i)
        by_weight.setdefault(name.split("[")[0] + ".row" + name.split("[")[1].split(",")[0], []).append(score)
    rows = row.by_name()
    for name, parts in by_weight.items():
        assert sum(parts) == pytest.approx(rows[name], abs=1e-5)
    neurons = neuron.by_name()
    out_key = f"L{LAYER}.mlp.W_out["
    column = sum(
        s
        for i, s in enumerate(weight.scores.tolist())
        if weight.name(i).startswith(out_key) and weight.name(i).endswith(f",{NEURON}]")
    )
    assert neurons[PLANTED] == pytest.approx(column, abs=1e-5)


def test_neuron_saliency_is_activation_times_gradient(planted):
    model, batch = planted
    model = copy.deepcopy(model)  # backward fills .grad; keep the shared fixture read-only
    cache = {}

    def keep(act, hook):
        act.retain_grad()
        cache["post"] = act
        return act

    with model.hooks(fwd_hooks=[(hooks.mlp_post(LAYER), keep)]):
        logits = model(batch.tokens)[torch.arange(len(batch)), batch.answer_pos]
        loss = torch.nn.functional.cross_entropy(logits, batch.answers)
        loss.backward()
    attribution = (cache["post"] * cache["post"].grad).sum((0, 1)).detach()
    scores = saliency_scores(model, batch, level="neuron").by_name()
    for n in (0, NEURON, 17):
        assert scores[f"L{LAYER}.mlp.n{n}"] == pytest.approx(float(attribution[n]), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("gated", [False, True])
def test_pruned_neuron_equals_zero_ablating_its_activation(gated):
    config = (
        tiny_model_config(act_fn="silu", normalization="RMS", gated_mlp=True)
        if gated
        else tiny_model_config()
    )
    model = build_model(config)
    tokens = _tokens(8)
    pruned = prune_units(model, ["L0.mlp.n3", "L1.mlp.n30"])

    def ablate(n):
        def hook(act, hook):
            act = act.clone()
            act[..., n] = 0
            return act

        return hook

    with torch.no_grad():
        expected = model.run_with_hooks(
            tokens, fwd_hooks=[(hooks.mlp_post(0), ablate(3)), (hooks.mlp_post(1), ablate(30))]
        )
        got = pruned(tokens)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, model(tokens).detach(), atol=1e-4)


def test_pruned_value_row_equals_its_bias_in_attn_z():
    model = build_model(tiny_model_config())
    d_head = model.cfg.d_head
    row = 11
    head, dim = divmod(row, d_head)
    bias = float(model.state_dict()["blocks.1.attn.v.bias"][row])
    tokens = _tokens(8)

    def set_bias(act, hook):
        act = act.clone()
        act[:, :, head, dim] = bias  # attention weights sum to 1, so z = b_V there
        return act

    with torch.no_grad():
        expected = model.run_with_hooks(tokens, fwd_hooks=[(hooks.attn_z(1), set_bias)])
        got = prune_units(model, [f"L1.attn.W_V.row{row}"])(tokens)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_single_weight_pruning_zeroes_one_entry_only():
    model = build_model(tiny_model_config())
    pruned = prune_units(model, ["L0.attn.W_Q[2,5]"])
    a, b = model.state_dict(), pruned.state_dict()
    diff = {k for k in a if not torch.equal(a[k], b[k])}
    assert diff == {"blocks.0.attn.q.weight"}
    changed = (a["blocks.0.attn.q.weight"] != b["blocks.0.attn.q.weight"]).nonzero().tolist()
    assert changed == [[2, 5]] and b["blocks.0.attn.q.weight"][2, 5] == 0


def test_pruning_curve_reports_each_k_and_leaves_the_model(planted):
    model, batch = planted
    before = copy.deepcopy(model.state_dict())
    eval_set = EvalSet("pt", batch)
    curve = pruning_curve(model, batch, [eval_set], ks=range(0, 4), level="neuron")
    assert curve.ks == (0, 1, 2, 3)
    assert curve.units[0] == PLANTED and len(curve.units) == 3
    assert curve.accuracy["pt"][0] == evaluate(model, eval_set).accuracy
    assert curve.accuracy["pt"][1] == 1.0
    assert curve.best("pt", k_max=3)[0] == 1
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert curve.to_json()["units"][0] == PLANTED
    given = pruning_curve(model, None, [eval_set], ks=range(0, 4), scores=saliency_scores(model, batch))
    assert given == curve
    with pytest.raises(ConfigError, match="score_data"):
        pruning_curve(model, None, [eval_set], ks=range(0, 4))


def test_baselines(planted):
    model, batch = planted
    dead = prune_units(model, ["L0.mlp.n9"])
    assert magnitude_scores(dead, level="neuron").top(1) == ("L0.mlp.n9",)
    assert wanda_scores(dead, batch, level="neuron").top(1) == ("L0.mlp.n9",)
    assert torch.equal(random_scores(model, seed=1).scores, random_scores(model, seed=1).scores)
    assert not torch.equal(random_scores(model, seed=1).scores, random_scores(model, seed=2).scores)
    # Wanda on one row of W_out: sum_j |W_ij| * ||X_j|| with X the MLP activations over all tokens
    _, cache = model.run_with_cache(batch.tokens, names_filter=[hooks.mlp_post(1)])
    norms = cache[hooks.mlp_post(1)].reshape(-1, 32).norm(dim=0)
    w_out = model.state_dict()["blocks.1.mlp.out.weight"]
    expected = float((w_out[4].abs() * norms).sum())
    assert wanda_scores(model, batch, level="row").by_name()["L1.mlp.W_out.row4"] == pytest.approx(
        expected, rel=1e-4
    )


def test_learned_mask_removes_the_planted_neuron(planted):
    model, batch = planted
    result = learn_mask(model, batch, config=MaskConfig(steps=100, lr=0.1, batch_size=64))
    assert PLANTED in result.removed and len(result.removed) <= 2
    assert evaluate(prune_units(model, result.removed), EvalSet("pt", batch)).accuracy >= 0.95
    assert result.gates.shape == (2, 32)
    assert result.to_json()["n_removed"] == len(result.removed)


def test_unit_names_are_checked():
    model = build_model(tiny_model_config())
    for bad in ("L0.mlp.n99", "L0.attn.W_X.row1", "L5.attn.W_Q.row0", "mlp.n3", "L0.attn.W_Q[99,0]"):
        with pytest.raises(ConfigError):
            prune_units(model, [bad])
    with pytest.raises(LITERAL_ERRORS):
        saliency_scores(
            model,
            Batch(
                tokens=_tokens(4), answer_pos=torch.full((4,), 3), answers=torch.zeros(4, dtype=torch.long)
            ),
            level="head",
        )
    with pytest.raises(LITERAL_ERRORS):
        MaskConfig(kind="l1")


def test_mask_config_round_trips_through_json():
    config = MaskConfig(kind="sigmoid", steps=50, penalty=0.2)
    assert from_json(MaskConfig, to_json(config)) == config
