"""Hugging Face models from a local directory, as TransformerLens models, with no network.

``load_hub_model`` boots a directory written by ``save_pretrained`` (``config.json`` with a ``model_type``,
the weights and a tokenizer) with ``TransformerBridge.boot_transformers``. The bridge keeps the raw,
unprocessed weights (no LayerNorm folding or centring), so a weight diff compares the original parameters
and hook names are the same as on ftmech's own models.
"""

import json
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge
from transformers.utils import logging as hf_logging

from interp.errors import CheckpointError


def is_hub_dir(path: str | Path) -> bool:
    """Whether ``path`` is a local Hugging Face model directory (its config.json names a ``model_type``)."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and "model_type" in json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def load_hub_model(path: str | Path, *, device: str = "cpu") -> TransformerBridge:
    """Boot the Hugging Face model in the local directory ``path``; a one-line ``CheckpointError`` when it is
    not one or cannot be loaded (a hub name is refused: nothing is downloaded)."""
    if not is_hub_dir(path):
        raise CheckpointError(
            f"{path} is not a local Hugging Face model directory (no config.json with a model_type)"
        )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # stderr stays for errors: one line each
    try:
        return TransformerBridge.boot_transformers(str(path), device=device)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load the Hugging Face model in {path}: {first}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
