"""Story checkpoints: ``interp.checkpoints`` checkpoints with their tokenizer beside them, and hub models."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.checkpoints import load_checkpoint, read_checkpoint_info, save_checkpoint
from interp.config import from_dict
from interp.errors import CheckpointError, OfflineError
from interp.models import ModelConfig
from procedural_tasks.story_data import StoryDataConfig
from procedural_tasks.story_loaders import hub_offline
from procedural_tasks.story_tokenizer import StoryTokenizer

TASK_NAME = "tinystories"
TOKENIZER_FILE = "tokenizer.json"


def save_story_checkpoint(
    out_dir: str | Path,
    model: torch.nn.Module,
    model_config: ModelConfig,
    tokenizer: StoryTokenizer,
    metadata: Mapping[str, Any],
) -> Path:
    """The model checkpoint plus ``tokenizer.json`` beside it; metadata names the tokenizer file."""
    out = Path(out_dir)
    tokenizer.save(out / TOKENIZER_FILE)
    return save_checkpoint(
        out, model, model_config, {**metadata, "task": TASK_NAME, "tokenizer": TOKENIZER_FILE}
    )


@dataclass(frozen=True)
class StoryCheckpoint:
    """A loaded story model with its tokenizer, data config and metadata."""

    model: torch.nn.Module
    model_config: ModelConfig
    tokenizer: StoryTokenizer
    data: StoryDataConfig
    metadata: dict[str, Any]


def load_story_checkpoint(ckpt_dir: str | Path, *, device: str = "cpu") -> StoryCheckpoint:
    """A story checkpoint's model, tokenizer and data config; CheckpointError if it is not one (told by its task
    name before its weights are read)."""
    task = read_checkpoint_info(ckpt_dir).metadata.get("task")
    if task != TASK_NAME:
        raise CheckpointError(f"{ckpt_dir} is not a TinyStories checkpoint (task {task!r})")
    model, info = load_checkpoint(ckpt_dir, device=device)
    meta = info.metadata
    tokenizer = StoryTokenizer.load(Path(ckpt_dir) / meta.get("tokenizer", TOKENIZER_FILE))
    if tokenizer.vocab_size > info.model_config.d_vocab:
        raise CheckpointError(
            f"{ckpt_dir}: tokenizer has {tokenizer.vocab_size} tokens but the model d_vocab is "
            f"{info.model_config.d_vocab}; the tokenizer.json does not belong to this model"
        )
    data = from_dict(StoryDataConfig, meta["data"])
    return StoryCheckpoint(model, info.model_config, tokenizer, data, meta)


def load_hub_story_model(name: str = "roneneldan/TinyStories-1M", *, device: str = "cpu") -> torch.nn.Module:
    """A TinyStories model from the Hugging Face hub as a TransformerBridge (``boot_transformers``).

    With HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) and the model not in the local cache, raises OfflineError at
    once instead of waiting on the network; a failed download is an OfflineError too.
    """
    if hub_offline():
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError as err:
            raise OfflineError(f"{name} needs huggingface_hub and a network; use a local checkpoint") from err
        cached = try_to_load_from_cache(name, "config.json")
        if not isinstance(cached, str):
            raise OfflineError(
                f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                "unset it with a network, or train a local model with `ftmech tinystories pretrain`"
            )
    import transformer_lens.model_bridge.sources.transformers  # noqa: F401  (attaches boot_transformers)
    from transformer_lens.model_bridge import TransformerBridge

    try:
        return TransformerBridge.boot_transformers(name, device=device)
    except OSError as err:
        raise OfflineError(
            f"could not download {name} ({err.__class__.__name__}); check the network or the model name"
        ) from err
