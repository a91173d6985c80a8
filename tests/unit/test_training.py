"""The training engine: schedule, learning, determinism, exact resume, NaN handling."""

import dataclasses
import json

import pytest
import torch

from interp import training
from interp.batches import Batch, EvalSet
from interp.errors import CheckpointError, ConfigError, TrainingError
from interp.evaluation import evaluate
from interp.models import build_model
from interp.training import TrainConfig, lr_at, train
from tests.conftest import tiny_model_config, tiny_train_config


def copy_task_batch(step: int, n: int = 16, seed: int = 0) -> Batch:
    """A trivial task: the answer is the first token (ids 10..19), asked at the last position."""
    g = torch.Generator().manual_seed(seed * 100_003 + step)
    tokens = torch.randint(10, 20, (n, 6), generator=g)
    return Batch(tokens=tokens, answer_pos=torch.full((n,), 5), answers=tokens[:, 0].clone())


def test_a_batch_whose_logits_cannot_fit_is_refused_before_anything_is_written(tmp_path, monkeypatch) -> None:
    model = build_model(tiny_model_config())  # d_vocab 64: 16 x 6 tokens need 3 x 4 x 96 x 64 = 73,728 bytes
    assert training._available_memory(torch.device("cpu")) > 2**20  # MemAvailable is read on this machine
    monkeypatch.setattr(training, "_available_memory", lambda device: 73_727)
    with pytest.raises(
        ConfigError, match="a batch of 16 x 6 tokens needs about 0.0 GiB for its logits alone"
    ):
        train(model, copy_task_batch, tiny_train_config(steps=2), out_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(training, "_available_memory", lambda device: 73_728)
    assert train(model, copy_task_batch, tiny_train_config(steps=2), progress=False).final_step == 2


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, warmup_frac=0.2, min_lr_ratio=0.01)
    assert lr_at(0, cfg) == pytest.approx(1 / 20)
    assert lr_at(19, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.01, abs=1e-3)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(20, 99))
    flat = dataclasses.replace(cfg, schedule="constant", warmup_frac=0.0)
    assert lr_at(50, flat) == 1.0


def test_a_tiny_model_learns_a_trivial_task_and_loss_falls(tmp_path) -> None:
    model = build_model(tiny_model_config())
    eval_set = EvalSet("copy", copy_task_batch(0, n=256, seed=99))
    before = evaluate(model, eval_set)
    result = train(
        model,
        copy_task_batch,
        tiny_train_config(steps=150, lr=1e-2, eval_every=50),
        eval_sets=[eval_set],
        out_dir=tmp_path,
        progress=False,
    )
    after = evaluate(model, eval_set)
    assert after.accuracy > 0.95 > before.accuracy + 0.5
    assert result.history[-1]["train_loss"] < result.history[1]["train_loss"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 50, 100, 150]


def test_same_seed_gives_bit_identical_weights() -> None:
    cfg = tiny_train_config(steps=12)
    a, b = build_model(tiny_model_config()), build_model(tiny_model_config())
    train(a, copy_task_batch, cfg, progress=False)
    train(b, copy_task_batch, cfg, progress=False)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, optimizer: str) -> None:
    cfg = tiny_train_config(steps=12, checkpoint_every=5, optimizer=optimizer)
    full = build_model(tiny_model_config())
    train(full, copy_task_batch, cfg, out_dir=tmp_path / "full", progress=False)

    class Killed(Exception):
        pass

    def dying_batches(step: int) -> Batch:
        if step == 8:
            raise Killed
        return copy_task_batch(step)

    part = build_model(tiny_model_config())
    with pytest.raises(Killed):
        train(part, dying_batches, cfg, out_dir=tmp_path / "part", progress=False)
    resumed = build_model(tiny_model_config())
    workers = (
        dataclasses.replace(cfg, data_workers=1) if optimizer == "adamw" else cfg
    )  # may change on resume
    result = train(resumed, copy_task_batch, workers, out_dir=tmp_path / "part", resume=True, progress=False)
    assert result.resumed_from == 5
    assert all(
        torch.equal(x, y)
        for x, y in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True)
    )
    steps = [json.loads(x)["step"] for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 5, 10, 12]


def test_resume_refuses_a_changed_config_or_missing_state(tmp_path) -> None:
    cfg = tiny_train_config(steps=10, checkpoint_every=5)
    train(
        build_model(tiny_model_config()),
        copy_task_batch,
        dataclasses.replace(cfg, steps=6),
        out_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(CheckpointError, match="different training config"):
        train(
            build_model(tiny_model_config()),
            copy_task_batch,
            cfg,
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="no resumable state"):
        train(
            build_model(tiny_model_config()),
            copy_task_batch,
            cfg,
            out_dir=tmp_path / "none",
            resume=True,
            progress=False,
        )


def test_nan_loss_stops_with_a_clear_error_and_keeps_weights(tmp_path) -> None:
    model = build_model(tiny_model_config())

    def poisoned(step: int) -> Batch:
        if step == 3:
            with torch.no_grad():
                model.blocks[0].mlp.W_in.fill_(float("nan"))  # a view of the real parameter
        return copy_task_batch(step)

    with pytest.raises(TrainingError, match="loss became nan at step 3"):
        train(model, poisoned, tiny_train_config(steps=10), out_dir=tmp_path, progress=False)
    assert (tmp_path / "resume" / "model.safetensors").is_file()


def test_train_config_validation() -> None:
    with pytest.raises(ConfigError, match="lr must be"):
        TrainConfig(steps=1, lr=-1)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        TrainConfig(steps=1, optimizer="lion")


def test_out_of_vocabulary_tokens_are_reported() -> None:
    from interp.errors import DataError

    batch = copy_task_batch(0)
    with pytest.raises(DataError, match="out of the model's vocabulary"):
        dataclasses.replace(batch, tokens=batch.tokens + 100).check_vocab(64)


def test_bf16_autocast_learns_with_fp32_weights_and_changes_the_numbers() -> None:
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(steps=1, precision="fp16")
    eval_set = EvalSet("copy", copy_task_batch(0, n=256, seed=99))
    fp32, bf16 = build_model(tiny_model_config()), build_model(tiny_model_config())
    cfg = tiny_train_config(steps=150, lr=1e-2, eval_every=150)
    train(fp32, copy_task_batch, cfg, progress=False)
    train(bf16, copy_task_batch, dataclasses.replace(cfg, precision="bf16"), progress=False)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    assert evaluate(bf16, eval_set).accuracy > 0.95
    assert not all(
        torch.equal(x, y) for x, y in zip(fp32.state_dict().values(), bf16.state_dict().values(), strict=True)
    )


def test_set_threads_limits_torch_and_every_blas_and_openmp_pool() -> None:
    import subprocess
    import sys

    code = (
        "from interp.runtime import set_threads; set_threads(1); import sklearn.linear_model, torch; "
        "from threadpoolctl import threadpool_info; "
        "print(sorted({i['num_threads'] for i in threadpool_info()} | {torch.get_num_threads()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[1]"
