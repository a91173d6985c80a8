"""Model building, hook names and checkpoints (atomic, validated, never pickled)."""

import json
import re

import pytest
import torch

from interp import hooks
from interp.checkpoints import load_checkpoint, save_checkpoint
from interp.config import config_hash, from_dict, from_json, load_config, to_json
from interp.errors import CheckpointError, ConfigError
from interp.models import PRESETS, ModelConfig, build_model, preset
from interp.runtime import eval_mode
from interp.training import TrainConfig
from procedural_tasks.pcfg_tasks import PCFGTaskConfig
from tests.conftest import tiny_model_config


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(tiny_model_config(seed=1))
    after = torch.rand(1)
    b = build_model(tiny_model_config(seed=1))
    c = build_model(tiny_model_config(seed=2))
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", ["cpu", "llama_cpu"])
def test_presets_build_and_expose_the_hooks_we_name(name: str) -> None:
    cfg = preset(name).for_task(d_vocab=40, n_ctx=16)
    model = build_model(cfg)
    tokens = torch.randint(0, 40, (2, 10))
    names = hooks.residual_stream(cfg.n_layers) + [hooks.mlp_post(0), hooks.attn_pattern(1), hooks.attn_z(0)]
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    assert logits.shape == (2, 10, 40)
    assert set(names) <= set(cache.keys())
    assert cache[hooks.resid_post(0)].shape == (2, 10, cfg.d_model)
    assert cache[hooks.mlp_post(0)].shape[-1] == cfg.d_mlp
    assert cache[hooks.attn_pattern(1)].shape == (2, cfg.n_heads, 10, 10)


def test_paper_preset_matches_the_study() -> None:
    p = PRESETS["paper"]
    assert (p.n_layers, p.n_heads, p.d_model, p.d_mlp, p.normalization, p.positional) == (
        6,
        6,
        192,
        768,
        "LN",
        "standard",
    )


def test_model_config_validation() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(n_layers=1, d_model=10, n_heads=3, d_mlp=8)
    with pytest.raises(ConfigError, match="unknown act_fn"):
        ModelConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=8, act_fn="tanh")
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ConfigError, match="must be set"):
        build_model(ModelConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=8))


@pytest.mark.parametrize(
    "config",
    [
        tiny_model_config(),
        TrainConfig(steps=3, eval_steps=(1, 2)),
        PCFGTaskConfig(window=20, region=10, prior=(0.5, 0.5, 0.0)),
    ],
)
def test_configs_round_trip_through_json(config) -> None:
    assert from_json(type(config), to_json(config)) == config
    assert config_hash(from_json(type(config), to_json(config))) == config_hash(config)


def test_unknown_config_key_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'n_layers'"):
        from_dict(ModelConfig, {"n_layer": 2, "d_model": 8, "n_heads": 2, "d_mlp": 8})


def test_yaml_configs_read_exponent_floats_and_every_field_is_type_checked(tmp_path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("steps: 3\nlr: 1e-3\nbetas: [0.9, 9.99e-1]\nwarmup_frac: 0\n")
    config = load_config(TrainConfig, path)  # PyYAML alone reads 1e-3 as the string '1e-3'
    assert (config.lr, config.betas, config.warmup_frac) == (0.001, (0.9, 0.999), 0.0)
    for text, message in (
        ("steps: three", "TrainConfig.steps must be an integer, got str"),
        ("steps: 3\nbetas: [0.9]", "TrainConfig.betas must be a list of 2 values"),
        ("steps: 3\ncompile: maybe", "TrainConfig.compile must be true or false, got str"),
        ("steps: 3\nprecision: fp16", "TrainConfig.precision must be one of 'fp32', 'bf16'"),
        ("steps: 3\neval_steps: [1, x]", "TrainConfig.eval_steps[1] must be an integer, got str"),
    ):
        path.write_text(text + "\n")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(TrainConfig, path)
    path.write_text("steps: [1\nlr: 2\n")
    with pytest.raises(
        ConfigError, match=f"config {re.escape(str(path))} is not valid YAML: .* at line 2"
    ) as info:
        load_config(TrainConfig, path)
    assert "\n" not in str(info.value)
    (tmp_path / "train.json").write_text('{"steps": 3,}')
    with pytest.raises(ConfigError, match="train.json is not valid JSON: Expecting property name"):
        load_config(TrainConfig, tmp_path / "train.json")


def test_checkpoint_round_trip(tmp_path) -> None:
    model = build_model(tiny_model_config(seed=3))
    save_checkpoint(tmp_path / "ck", model, tiny_model_config(seed=3), {"task": "x"})
    loaded, info = load_checkpoint(tmp_path / "ck")
    assert info.model_config == tiny_model_config(seed=3) and info.metadata["task"] == "x"
    tokens = torch.randint(0, 64, (2, 8))
    assert torch.equal(model(tokens), loaded(tokens))
    assert not list((tmp_path / "ck").glob(".*tmp"))
    assert not loaded.training and not any(m.training for m in loaded.modules())


def test_eval_mode_switches_only_training_models_and_restores_them_after_an_error(monkeypatch) -> None:
    training, frozen = build_model(tiny_model_config(seed=1)), build_model(tiny_model_config(seed=2)).eval()
    switched: list[torch.nn.Module] = []
    real_train = torch.nn.Module.train

    def counting_train(self, mode: bool = True):
        switched.append(self)
        return real_train(self, mode)

    monkeypatch.setattr(type(frozen), "train", counting_train)
    with pytest.raises(RuntimeError, match="inside"), eval_mode(training, frozen):
        assert not training.training and not frozen.training
        raise RuntimeError("inside")
    assert training.training and all(m.training for m in training.modules())
    assert not frozen.training
    assert frozen not in switched and training in switched


def test_corrupted_and_mismatched_checkpoints_are_rejected_clearly(tmp_path) -> None:
    model = build_model(tiny_model_config())
    save_checkpoint(tmp_path / "ck", model, tiny_model_config())
    weights = tmp_path / "ck" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "ck")
    weights.write_bytes(data)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["model"]["d_model"] = 32
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(tmp_path / "nothing")
