"""Shared test set-up: offline, one torch thread, hypothesis CI profile, tiny config factories."""

import dataclasses
import hashlib
import os
import socket
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

from analyses.pcfg.config import PCFGStudyConfig  # noqa: E402
from interp.config import to_json  # noqa: E402
from interp.models import ModelConfig  # noqa: E402
from interp.training import TrainConfig  # noqa: E402
from procedural_tasks.pcfg_tasks import PCFGTaskConfig  # noqa: E402

torch.set_num_threads(1)
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path: equal before and after means nothing was written."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tiny_model_config(**overrides) -> ModelConfig:
    """2 layers, d_model 16, 2 heads, d_mlp 32, n_ctx 32, d_vocab 64 unless overridden."""
    base = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=64, n_ctx=32)
    return dataclasses.replace(base, **overrides)


def tiny_task_config(**overrides) -> PCFGTaskConfig:
    """A short PCFG window (12 tokens, counting the last 8) for fast tests."""
    base = PCFGTaskConfig(window=12, region=8, families=("count",))
    return dataclasses.replace(base, **overrides)


def tiny_train_config(**overrides) -> TrainConfig:
    base = TrainConfig(steps=10, batch_size=8, lr=3e-3, eval_every=5, device="cpu", threads=1)
    return dataclasses.replace(base, **overrides)


def tiny_pcfg_study_file(directory: Path) -> str:
    """A PCFG study of one seed and the low prior on the tiny preset (8 jobs), written to
    ``directory/study.json``; that path, for ``--config``."""
    config = PCFGStudyConfig(
        preset="tiny",
        seeds=(0,),
        priors=("low",),
        finetune_grid=(("low", "M", 1.0),),
        reverse_from=(("low", "M", 1.0),),
        device="cpu",
    )
    path = Path(directory) / "study.json"
    path.write_text(to_json(config))
    return str(path)


@pytest.fixture
def tiny_model_cfg() -> ModelConfig:
    return tiny_model_config()


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if it opens a network connection (use with ``pytest.mark.usefixtures("no_network")``)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
