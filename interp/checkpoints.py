"""Checkpoints: ``model.safetensors`` + ``config.json``, written atomically, never pickled.

A checkpoint directory holds the weights (keys of the model's ``state_dict``), and a JSON file with
the ``ModelConfig``, the task/tokenizer metadata needed to use the model, and provenance (ftmech,
torch and git versions). Loading checks that every tensor name and shape matches the config and
says clearly what does not.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens.model_bridge import TransformerBridge

from interp.atomic_files import atomic_write, atomic_write_text
from interp.config import FTMECH_VERSION, from_dict, to_dict
from interp.errors import CheckpointError, ConfigError
from interp.models import ModelConfig, build_model

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model: the architecture and free-form task metadata."""

    model_config: ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def provenance() -> dict[str, Any]:
    """Versions recorded beside every result so a run can be traced."""
    commit = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {"ftmech_version": FTMECH_VERSION, "torch_version": torch.__version__, "git_commit": commit}


def atomic_save_tensors(
    tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Save tensors as safetensors atomically (temporary file + rename)."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(cpu, tmp, metadata=metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupted file is a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({exc}); re-create the checkpoint"
        ) from None


def save_checkpoint(
    out_dir: str | Path,
    model: torch.nn.Module,
    model_config: ModelConfig,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its config to ``out_dir`` (weights first, then config.json, each atomically)."""
    out = Path(out_dir)
    atomic_save_tensors(model.state_dict(), out / WEIGHTS)
    payload = {"model": to_dict(model_config), "metadata": dict(metadata or {}), "provenance": provenance()}
    atomic_write_text(out / CONFIG, json.dumps(payload, indent=2, sort_keys=True))
    return out


def read_checkpoint_info(ckpt_dir: str | Path) -> CheckpointInfo:
    """Parse ``config.json`` of a checkpoint without loading weights."""
    path = Path(ckpt_dir) / CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {ckpt_dir}: {CONFIG} is missing (train one with `ftmech pretrain`)"
        )
    try:
        payload = json.loads(path.read_text())
        model_config = from_dict(ModelConfig, payload["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path} is not a valid ftmech checkpoint config: {exc}") from None
    return CheckpointInfo(model_config, payload.get("metadata", {}), payload.get("provenance", {}))


def check_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise a CheckpointError naming missing, unexpected and mis-shaped tensors."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if found[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    if shapes:
        problems.append(f"shape mismatch (checkpoint vs config) {shapes[:3]}")
    if problems:
        raise CheckpointError(f"{source} does not match its config: {'; '.join(problems)}")


def load_weights_into(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy checked tensors into ``model`` (names and shapes must match its state_dict exactly)."""
    check_state_dict(model.state_dict(), tensors, source)
    model.load_state_dict(dict(tensors), strict=True)


def load_checkpoint(
    ckpt_dir: str | Path,
    *,
    device: str = "cpu",
    architecture: Callable[[CheckpointInfo], TransformerBridge] | None = None,
) -> tuple[TransformerBridge, CheckpointInfo]:
    """Rebuild the model of a checkpoint directory and load its weights (validated, no pickle), in eval mode
    (``interp.training.train`` switches it to training).

    The model is ``build_model(info.model_config)``, or ``architecture(info)`` for a model a ModelConfig
    cannot describe (a compiled tracr program: bidirectional attention, separate output classes), built
    from what the checkpoint's metadata names.
    """
    info = read_checkpoint_info(ckpt_dir)
    model = build_model(info.model_config, device=device) if architecture is None else architecture(info)
    load_weights_into(model, load_tensors(Path(ckpt_dir) / WEIGHTS), str(Path(ckpt_dir) / WEIGHTS))
    return model.eval(), info


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written directory into place, replacing an older one without a window where none exists."""
    old = final_dir.with_name(final_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)
