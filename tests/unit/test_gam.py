"""The GAM model: the paper's block, hooks under the transformer's names, seeded init, receptive field,
checkpoints, bit-identical resume, and the library analyses run on it unchanged."""

import dataclasses

import pytest
import torch

from interp import hooks, weights
from interp.activations import collect_activations
from interp.batches import Batch, EvalSet
from interp.checkpoints import load_checkpoint, save_checkpoint
from interp.diffing import attention_diff, kl_by_position, weight_diff
from interp.errors import ConfigError
from interp.gam import GAMModel, matched_memory, receptive_field, smallest_kernel
from interp.models import ModelConfig, build_model, n_params, preset
from interp.patching import answer_accuracy, patch_across_models
from interp.pruning import prune_units, pruning_curve, saliency_scores
from interp.training import train
from tests.conftest import tiny_train_config

D_VOCAB, N_CTX = 12, 10


def gam_config(**overrides) -> ModelConfig:
    base = preset("gam_tiny").for_task(d_vocab=D_VOCAB, n_ctx=N_CTX)
    return dataclasses.replace(base, **overrides)


def _batch(n: int = 16, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, D_VOCAB, (n, N_CTX), generator=gen)
    answers = (tokens[:, -4:] == 1).sum(1)  # a count the model can read within its window
    return Batch(tokens=tokens, answer_pos=torch.full((n,), N_CTX - 1), answers=answers)


def test_block_matches_the_paper_equations() -> None:
    model = build_model(gam_config())
    mixer, x = model.blocks[0].mixer, torch.randn(2, N_CTX, 16)
    k = mixer.conv.kernel_size[0]
    padded = torch.cat([torch.zeros(2, k - 1, 16), x], 1)
    local = (
        torch.stack([(padded[:, t : t + k] * mixer.conv.weight[:, 0].T).sum(1) for t in range(N_CTX)], 1)
        + mixer.conv.bias
    )
    bank = mixer.memory.weight
    retrieved = torch.softmax(x @ bank.T, -1) @ bank
    g_local, g_global = (x @ mixer.gate.weight.T + mixer.gate.bias).chunk(2, -1)
    expected = torch.sigmoid(g_local) * local + torch.sigmoid(g_global) * retrieved
    torch.testing.assert_close(mixer(x), expected)


def test_hooks_use_the_transformer_names_and_the_gam_names_exist() -> None:
    model = build_model(gam_config())
    names = [hooks.EMBED, hooks.POS_EMBED, *hooks.residual_stream(2), *hooks.block_outputs(2)]
    for layer in range(2):
        names += [hooks.resid_pre(layer), hooks.resid_mid(layer), hooks.mlp_pre(layer), hooks.mlp_post(layer)]
        names += [hooks.mixer_out(layer), hooks.conv_out(layer), hooks.memory_scores(layer)]
        names += [hooks.memory_pattern(layer), hooks.memory_out(layer)]
        names += [hooks.gate(layer, "local"), hooks.gate(layer, "global")]
    assert set(names) <= set(model.hook_dict)
    assert hooks.attn_pattern(0) not in model.hook_dict
    logits, cache = model.run_with_cache(_batch().tokens, names_filter=names)
    assert set(names) <= set(cache)
    torch.testing.assert_close(cache[hooks.attn_out(1)], cache[hooks.mixer_out(1)])
    torch.testing.assert_close(cache[hooks.memory_pattern(0)].sum(-1), torch.ones(16, N_CTX))
    assert cache[hooks.memory_scores(0)].shape == (16, N_CTX, 8)
    resid = cache[hooks.resid_mid(0)] - cache[hooks.resid_pre(0)]
    torch.testing.assert_close(resid, cache[hooks.mixer_out(0)])
    torch.testing.assert_close(model.run_with_hooks(_batch().tokens), logits)


def test_seeded_init_is_bit_identical_and_the_seed_matters() -> None:
    a, b, c = build_model(gam_config()), build_model(gam_config()), build_model(gam_config(seed=1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa[weights.memory(0)], sc[weights.memory(0)])
    assert isinstance(a, GAMModel) and a.cfg.d_vocab == D_VOCAB and a.cfg.n_layers == 2


@pytest.mark.parametrize("kernel", [2, 3, 4])
def test_receptive_field_is_layers_times_kernel_minus_one_plus_one(kernel: int) -> None:
    model = build_model(gam_config(conv_kernel=kernel, n_ctx=16)).eval()
    tokens = torch.randint(0, D_VOCAB, (1, 16), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[0, 3] = (changed[0, 3] + 1) % D_VOCAB
    moved = (model(tokens) - model(changed)).abs().sum(-1)[0] > 0
    field = receptive_field(2, kernel)
    assert moved.nonzero().flatten().tolist() == list(range(3, min(16, 3 + field)))
    assert model.cfg.receptive_field == field
    assert receptive_field(2, smallest_kernel(2, 9)) >= 9 > receptive_field(2, smallest_kernel(2, 9) - 1)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="architecture"):
        ModelConfig(n_layers=1, d_model=8, n_heads=1, d_mlp=8, architecture="rnn")
    with pytest.raises(ConfigError, match="conv_kernel"):
        gam_config(conv_kernel=0)
    with pytest.raises(ConfigError, match="n_memory"):
        gam_config(n_memory=0)
    with pytest.raises(ConfigError, match="positional"):
        gam_config(positional="rotary")
    with pytest.raises(ConfigError, match="n_ctx"):
        build_model(gam_config())(torch.zeros(1, N_CTX + 1, dtype=torch.long))


def test_checkpoint_round_trip(tmp_path) -> None:
    config = gam_config(seed=3)
    model = build_model(config)
    save_checkpoint(tmp_path, model, config, {"stage": "test"})
    loaded, info = load_checkpoint(tmp_path)
    assert info.model_config == config and isinstance(loaded, GAMModel)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_training_learns_and_resumes_bit_identically_after_a_kill(tmp_path) -> None:
    config = tiny_train_config(steps=12, checkpoint_every=5, eval_every=6)

    class Killed(Exception):
        pass

    def batches(step: int) -> Batch:
        return _batch(16, seed=step)

    def dying(step: int) -> Batch:
        if step == 8:
            raise Killed
        return batches(step)

    full = build_model(gam_config())
    train(full, batches, config, out_dir=tmp_path / "full", progress=False)
    with pytest.raises(Killed):
        train(build_model(gam_config()), dying, config, out_dir=tmp_path / "part", progress=False)
    resumed = build_model(gam_config())
    result = train(resumed, batches, config, out_dir=tmp_path / "part", resume=True, progress=False)
    assert result.resumed_from == 5
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in full.state_dict().items())
    start = build_model(gam_config()).state_dict()[weights.memory(0)]
    assert not torch.equal(full.state_dict()[weights.memory(0)], start)


def test_pruning_neurons_and_memory_rows() -> None:
    model, batch = build_model(gam_config()), _batch()
    neurons = saliency_scores(model, batch, level="neuron")
    assert len(neurons) == 2 * 32 and neurons.top(1)[0].startswith("L")
    rows = saliency_scores(model, batch, level="row")
    memory_rows = [rows.name(i) for i in range(len(rows)) if ".mixer.W_mem." in rows.name(i)]
    assert len(memory_rows) == 2 * 8
    pruned = prune_units(model, ["L1.mixer.W_mem.row5", "L0.mlp.n3"])
    assert pruned.state_dict()[weights.memory(1)][5].abs().sum() == 0
    assert pruned.state_dict()[weights.mlp(0, "out")][:, 3].abs().sum() == 0
    assert model.state_dict()[weights.memory(1)][5].abs().sum() > 0
    curve = pruning_curve(model, batch, [EvalSet("e", batch)], ks=[0, 2], level="row")
    assert len(curve.accuracy["e"]) == 2


def test_probe_diff_and_patch_run_and_attention_maps_say_why_not() -> None:
    base, batch = build_model(gam_config()), _batch()
    tuned = build_model(gam_config(seed=1))
    acts = collect_activations(base, batch, hook_names=hooks.residual_stream(2), position="answer")
    assert acts[hooks.resid_post(1)].shape == (16, 16)
    assert weight_diff(base, tuned).total_relative > 0
    assert kl_by_position(base, tuned, batch).mean > 0
    names = hooks.block_outputs(2)
    result = patch_across_models(base, tuned, batch, hook_names=names, metric=answer_accuracy)
    assert set(result.patched) == set(names)
    with pytest.raises(ConfigError, match="attention maps need attention"):
        attention_diff(base, tuned, batch, key_groups={"a": batch.tokens == 1})
    transformer = build_model(dataclasses.replace(gam_config(), architecture="transformer", n_heads=1))
    with pytest.raises(ConfigError, match=r"the two models differ in architecture \(transformer vs GAM\)"):
        patch_across_models(transformer, tuned, batch, hook_names=names, metric=answer_accuracy)


def test_gam_presets_match_the_transformer_they_stand_beside() -> None:
    gam = build_model(preset("gam_cpu").for_task(d_vocab=20, n_ctx=40))
    transformer = build_model(preset("cpu").for_task(d_vocab=20, n_ctx=40))
    assert gam.cfg.d_model == transformer.cfg.d_model and gam.cfg.d_mlp == transformer.cfg.d_mlp
    assert n_params(gam) == n_params(transformer)
    assert matched_memory(64, 3) == preset("gam_cpu").n_memory
