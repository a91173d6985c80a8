"""What the analysis commands take: a model directory of any kind, and a capability named by a spec.

``load_model`` opens ftmech checkpoints (PCFG, Tracr, TinyStories or plain) and local Hugging Face model
directories, and says which vocabulary each uses, so a pair with different vocabularies is refused in one line.
``build_capability`` turns a spec into a ``Capability``:

- ``pcfg:count:a``: counting a token of the base checkpoint's PCFG task (C_Te = 0);
- ``tracr:PROGRAM``: a compiled Tracr checkpoint's own answer r(x, O_PT) on inputs without the correlation;
- ``tinystories:FEATURE``: writing a story feature when the instruction asks for it (the first token of its
  marker, on the checkpoint's held-out stories);
- ``jsonl:PATH``: (prompt, answer) pairs, tokenized with the base model's tokenizer.

``add_capability_flags`` gives every analysis command the same ``--capability``, ``--n``, ``--seed``,
``--device`` and ``--threads`` flags.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.arguments import positive_int, random_seed
from interp.capability import Capability, capability_from_jsonl
from interp.checkpoints import load_checkpoint, read_checkpoint_info
from interp.config import lookup
from interp.errors import CheckpointError, ConfigError
from interp.hub_models import is_hub_dir, load_hub_model
from interp.models import to_device
from interp.patching import check_pair
from procedural_tasks.pcfg_capability import counting_capability
from procedural_tasks.pcfg_protocols import task_from_checkpoint
from procedural_tasks.story_capability import feature_capability
from procedural_tasks.story_checkpoints import load_story_checkpoint
from procedural_tasks.tracr_capability import program_capability
from procedural_tasks.tracr_models import load_tracr_checkpoint


@dataclass(frozen=True)
class LoadedModel:
    """A model with what the analyses need from its directory: its kind, task object and tokenizer."""

    path: str
    model: torch.nn.Module
    kind: str  # pcfg | tracr | tinystories | ftmech | hub
    vocabulary: tuple[str, ...] | None  # token strings in id order, where the directory names them
    task: Any = None  # a PCFG checkpoint's task, a Tracr one's program info, a story one's StoryCheckpoint
    tokenizer: Any = None  # a story or Hugging Face tokenizer


def load_model(path: str, *, device: str = "cpu") -> LoadedModel:
    """Open ``path`` as whichever kind of model directory it is; a one-line CheckpointError otherwise."""
    if not Path(path).is_dir():
        raise CheckpointError(f"{path} is not a directory; give a checkpoint or Hugging Face model directory")
    if is_hub_dir(path):
        model = load_hub_model(path, device=device)
        vocab = model.tokenizer.get_vocab() if model.tokenizer is not None else None
        words = tuple(sorted(vocab, key=vocab.get)) if vocab else None
        return LoadedModel(path, model, "hub", words, tokenizer=model.tokenizer)
    task = read_checkpoint_info(path).metadata.get("task")
    if task == "tracr":
        ckpt = load_tracr_checkpoint(path)
        words = tuple(sorted(ckpt.info.input_encoding, key=ckpt.info.input_encoding.get))
        return LoadedModel(path, to_device(ckpt.model, device), "tracr", words, task=ckpt.info)
    if task == "tinystories":
        story = load_story_checkpoint(path, device=device)
        vocab = story.tokenizer.tokenizer.get_vocab()
        words = tuple(sorted(vocab, key=vocab.get))
        return LoadedModel(path, story.model, "tinystories", words, task=story, tokenizer=story.tokenizer)
    model, info = load_checkpoint(path, device=device)
    if task == "pcfg":
        pcfg = task_from_checkpoint(info, path)
        return LoadedModel(path, model, "pcfg", tuple(pcfg.vocab.tokens), task=pcfg)
    return LoadedModel(path, model, "ftmech", None)


def check_same_model_family(a: LoadedModel, b: LoadedModel) -> None:
    """A one-line ConfigError unless the two models share an architecture and a vocabulary."""
    check_pair(a.model, b.model)
    if a.vocabulary is not None and b.vocabulary is not None and a.vocabulary != b.vocabulary:
        raise ConfigError(
            f"{a.path} and {b.path} use different vocabularies; compare models of one tokenizer"
        )


def _encoders(base: LoadedModel):
    """(prompt encoder with special tokens, answer encoder without) for the base model's tokenizer."""
    tok = base.tokenizer
    if tok is None:
        raise ConfigError(
            f"{base.path} has no tokenizer; a jsonl capability needs a Hugging Face or story model"
        )
    if base.kind == "tinystories":
        return (lambda t: tok.encode(t, bos=True)), (lambda t: tok.encode(t, bos=False))
    return (lambda t: tok.encode(t)), (lambda t: tok.encode(t, add_special_tokens=False))


def _pcfg(arg: str, base: LoadedModel, n_eval: int, seed: int) -> Capability:
    family, _, operand = arg.partition(":")
    if base.kind != "pcfg" or family != "count" or not operand:
        raise ConfigError(
            f"capability 'pcfg:{arg}' needs a PCFG base checkpoint and the form pcfg:count:OPERAND"
        )
    return counting_capability(base.task, operand=operand, n_eval=n_eval, n_train=n_eval, seed=seed)


def _tracr(arg: str, base: LoadedModel, n_eval: int, seed: int) -> Capability:
    if base.kind != "tracr" or arg != base.task.name:
        program = base.task.name if base.kind == "tracr" else "a Tracr checkpoint"
        raise ConfigError(
            f"capability 'tracr:{arg}' needs a Tracr base checkpoint of that program ({program})"
        )
    return program_capability(base.task, n_eval=n_eval, seed=seed)


def _tinystories(arg: str, base: LoadedModel, n_eval: int, seed: int) -> Capability:
    if base.kind != "tinystories":
        raise ConfigError(f"capability 'tinystories:{arg}' needs a TinyStories base checkpoint")
    return feature_capability(base.task, arg, n_eval=n_eval, seed=seed)


def _jsonl(arg: str, base: LoadedModel, n_eval: int, seed: int) -> Capability:  # noqa: ARG001
    prompt, answer = _encoders(base)
    return capability_from_jsonl(arg, prompt, answer, seed=seed)


BUILDERS = {"pcfg": _pcfg, "tracr": _tracr, "tinystories": _tinystories, "jsonl": _jsonl}
SPEC_HELP = "pcfg:count:OPERAND, tracr:PROGRAM, tinystories:FEATURE or jsonl:PATH (prompt/answer lines)"


def build_capability(spec: str, base: LoadedModel, *, n_eval: int = 1000, seed: int = 0) -> Capability:
    """The capability named by ``spec`` (one of ``SPEC_HELP``) for the base model."""
    kind, _, arg = spec.partition(":")
    return lookup(BUILDERS, kind, "capability kind")(arg, base, n_eval, seed)


def add_capability_flags(p: argparse.ArgumentParser, *, n: int = 1000) -> None:
    """--capability, --n, --seed, --device and --threads, as every analysis command takes them."""
    p.add_argument("--capability", required=True, help=SPEC_HELP)
    p.add_argument("--n", type=positive_int, default=n, help="evaluation examples of a generated capability")
    p.add_argument("--seed", type=random_seed, default=0, help="seed of the data, probes and relearning")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=positive_int, help="torch threads (default $FTMECH_THREADS or 1)")
