"""Rebuild the precompiled tracr programs as TransformerLens `TransformerBridge`s, with no JAX.

`scripts/compile_tracr.py` stores tracr's raw parameters ("transformer/layer_0/attn/query/w", ...)
beside a JSON of encodings and config. Here they become a `boot_native` state dict:

- tracr's haiku `Linear` computes x @ w + b, so every w is transposed into torch's (out, in) layout;
- attention: 1 head, d_head = tracr's key_size, scores divided by sqrt(key_size) as tracr does, no mask
  (tracr's assembled model masks nothing, not even PAD, so pads only change outputs at pad positions);
- no LayerNorm, ReLU MLPs; position 0 (BOS) has a zero positional embedding, as in tracr;
- the unembedding projects the residual onto the output label's directions, one class per output value
  (tracr's categorical argmax); its bias is zero.
"""

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformer_lens.model_bridge.sources.native  # noqa: F401  (attaches TransformerBridge.boot_native)
from jaxtyping import Float, Int
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from torch import Tensor
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from interp import weights
from interp.checkpoints import CheckpointInfo, check_state_dict, load_checkpoint, save_checkpoint
from interp.errors import CheckpointError
from interp.models import ModelConfig
from procedural_tasks import tracr_programs
from procedural_tasks.tracr_compilation import FORMAT_VERSION
from procedural_tasks.tracr_programs import ProgramConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "tracr_weights"
TASK = "tracr"  # the ``task`` a fine-tuned tracr checkpoint records in its metadata
_BRIDGE_FIELDS = (
    "n_layers",
    "d_model",
    "d_head",
    "n_heads",
    "d_mlp",
    "n_ctx",
    "d_vocab",
    "d_vocab_out",
    "act_fn",
    "normalization_type",
    "attention_dir",
)
_TRACR_MODULES = {  # our block part -> tracr's haiku module under transformer/layer_{i}/
    ("attn", "q"): "attn/query",
    ("attn", "k"): "attn/key",
    ("attn", "v"): "attn/value",
    ("attn", "o"): "attn/linear",
    ("mlp", "in"): "mlp/linear_1",
    ("mlp", "out"): "mlp/linear_2",
}


@dataclass(frozen=True, kw_only=True)
class CompiledProgramInfo:
    """What a compiled program means: its config, encodings and residual-stream basis labels."""

    config: ProgramConfig
    residual_labels: tuple[str, ...]  # one per d_model direction, e.g. "count_3:7", "tokens:a", "one"
    output_label: str  # the RASP label of the result, e.g. "counter_1"
    input_encoding: dict[str, int]  # token -> id, with BOS and PAD
    output_encoding: dict[int | str, int]  # answer value -> output class id
    bridge_config: dict[str, Any]  # the TransformerBridgeConfig fields the model was built with
    versions: dict[str, Any]  # tracr, jax, jaxlib, dm-haiku, numpy used to compile; file format

    @property
    def name(self) -> str:
        return self.config.name

    def encode(self, letters: Any) -> Int[Tensor, "batch pos"]:
        """Token ids: BOS, the letters, PAD up to the longest input (see tracr_programs.encode)."""
        return torch.from_numpy(tracr_programs.encode(letters, config=self.config))

    def decode_output(self, logits: Float[Tensor, "... n_classes"]) -> np.ndarray:
        """Answer values (counts or letters) of the argmax class at each position."""
        return tracr_programs.decode_output(logits.detach().cpu().numpy(), config=self.config)


def tracr_state_dict(params: dict[str, np.ndarray], info: CompiledProgramInfo) -> dict[str, Tensor]:
    """Tracr's raw parameters as a TransformerBridge state dict (keys as `model.state_dict()` names them)."""
    state = {
        weights.EMBED: _tensor(params, "token_embed/embeddings"),
        "pos_embed.weight": _tensor(params, "pos_embed/embeddings"),
        weights.UNEMBED: _unembed(info).T.contiguous(),
        "unembed.bias": torch.zeros(len(info.output_encoding)),
    }
    for layer in range(info.bridge_config["n_layers"]):
        for (block, part), module in _TRACR_MODULES.items():
            theirs = f"transformer/layer_{layer}/{module}"
            state[weights.block_param(layer, block, part)] = _tensor(params, f"{theirs}/w").T.contiguous()
            state[weights.block_param(layer, block, part, "bias")] = _tensor(params, f"{theirs}/b")
    return state


def _tensor(params: dict[str, np.ndarray], key: str) -> Tensor:
    if key not in params:
        raise CheckpointError(f"tracr weights lack {key!r}; recompile with scripts/compile_tracr.py")
    return torch.tensor(params[key], dtype=torch.float32)


def _unembed(info: CompiledProgramInfo) -> Float[Tensor, "d_model n_classes"]:
    """One-hot projection from the output label's residual directions onto the output classes."""
    index = {label: i for i, label in enumerate(info.residual_labels)}
    unembed = torch.zeros(len(index), len(info.output_encoding))
    for value, class_id in info.output_encoding.items():
        label = f"{info.output_label}:{value}"
        if label not in index:
            raise CheckpointError(
                f"residual labels lack the output direction {label!r}; the JSON is inconsistent"
            )
        unembed[index[label], class_id] = 1.0
    return unembed


def _program_files(name: str, weights_dir: Path | None) -> tuple[Path, Path]:
    """``{name}.json`` and ``{name}.safetensors`` in ``weights_dir`` (default: the package's), both present."""
    tracr_programs.program_config(name)
    folder = WEIGHTS_DIR if weights_dir is None else Path(weights_dir)
    json_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    for path in (json_path, weights_path):
        if not path.is_file():
            raise CheckpointError(
                f"tracr weights file {path} is missing; reinstall ftmech or run scripts/compile_tracr.py in a tracr venv"
            )
    return json_path, weights_path


def _program_info(json_path: Path, name: str) -> tuple[CompiledProgramInfo, str]:
    """What the program's JSON says about it, and the sha256 its weights file must have."""
    try:
        meta = json.loads(json_path.read_text())
        config = tracr_programs.program_config_from_dict(meta["program"])
        info = CompiledProgramInfo(
            config=config,
            residual_labels=tuple(meta["residual_labels"]),
            output_label=meta["output_label"],
            input_encoding={token: index for token, index in meta["input_encoding"]},
            output_encoding={value: index for value, index in meta["output_encoding"]},
            bridge_config={field: meta["bridge_config"][field] for field in _BRIDGE_FIELDS},
            versions=dict(meta["versions"]),
        )
        expected_sha = meta["weights_sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"tracr metadata {json_path} is corrupted ({error!r}); recompile or reinstall"
        ) from None
    if info.versions.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has format {info.versions.get('format')!r}, this code reads {FORMAT_VERSION}; "
            "recompile with scripts/compile_tracr.py"
        )
    if info.name != name:
        raise CheckpointError(f"{json_path} holds program {info.name!r}, not {name!r}")
    if info.input_encoding != tracr_programs.input_encoding_for(config) or info.output_encoding != (
        tracr_programs.output_encoding_for(config)
    ):
        raise CheckpointError(f"{json_path} has encodings that differ from the {name} program's; recompile")
    return info, expected_sha


def read_compiled(
    name: str, *, weights_dir: Path | None = None
) -> tuple[dict[str, np.ndarray], CompiledProgramInfo]:
    """Read and check `{name}.safetensors` and `{name}.json`; raise CheckpointError on any problem."""
    json_path, weights_path = _program_files(name, weights_dir)
    info, expected_sha = _program_info(json_path, name)
    raw = weights_path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != expected_sha:
        raise CheckpointError(
            f"{weights_path} does not match the sha256 in {json_path.name}; the file is corrupted"
        )
    try:
        params = load_numpy(raw)
    except SafetensorError as error:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({error})") from None
    return params, info


def compiled_architecture(info: CompiledProgramInfo) -> TransformerBridge:
    """The compiled program's TransformerBridge (float32, CPU, eval mode), its weights not yet loaded.

    Construction runs in `boot_native`'s forked RNG, so the caller's RNG is untouched.
    """
    fields = info.bridge_config
    config = TransformerBridgeConfig(
        **fields,
        attn_scale=math.sqrt(fields["d_head"]),
        model_name=f"tracr-{info.name}",
        seed=0,
        dtype=torch.float32,
    )
    return TransformerBridge.boot_native(config, device="cpu", dtype=torch.float32).eval()


def load_compiled(
    name: str, *, weights_dir: Path | None = None
) -> tuple[TransformerBridge, CompiledProgramInfo]:
    """The compiled `name` ("counter" or "max_identifier") as a TransformerBridge, and what it means.

    Logits have one class per answer value (`info.output_encoding`); every non-BOS position carries the
    answer.
    """
    params, info = read_compiled(name, weights_dir=weights_dir)
    model = compiled_architecture(info)
    state = tracr_state_dict(params, info)
    try:
        check_state_dict(model.state_dict(), state, f"tracr weights for {name}")
    except CheckpointError as error:
        raise CheckpointError(f"{error}; the files do not belong together, recompile") from None
    model.load_state_dict(state, strict=True)
    return model, info


# --- fine-tuned tracr models: interp.checkpoints with the program named in the metadata ----------------------


def model_config(info: CompiledProgramInfo) -> ModelConfig:
    """The compiled architecture as far as a ModelConfig can say it (its output classes and bidirectional
    attention are not ModelConfig fields: `compiled_architecture` builds them from the program's JSON)."""
    fields = info.bridge_config
    return ModelConfig(
        n_layers=fields["n_layers"],
        d_model=fields["d_model"],
        n_heads=fields["n_heads"],
        d_mlp=fields["d_mlp"],
        d_vocab=fields["d_vocab"],
        n_ctx=fields["n_ctx"],
        d_head=fields["d_head"],
        act_fn=fields["act_fn"],
        normalization="none",
    )


@dataclass(frozen=True)
class TracrCheckpoint:
    """A loaded fine-tuned tracr model, what its program means, and the checkpoint's metadata."""

    model: TransformerBridge
    info: CompiledProgramInfo
    metadata: dict[str, Any]


def save_tracr_checkpoint(
    out_dir: str | Path, model: torch.nn.Module, info: CompiledProgramInfo, metadata: dict[str, Any]
) -> Path:
    """``interp.checkpoints.save_checkpoint`` with the task and program named in the metadata."""
    return save_checkpoint(
        out_dir, model, model_config(info), {**metadata, "task": TASK, "program": info.name}
    )


def load_tracr_checkpoint(ckpt_dir: str | Path) -> TracrCheckpoint:
    """A checkpoint written by `save_tracr_checkpoint`, loaded through ``interp.checkpoints.load_checkpoint``
    into the compiled architecture of the program its metadata names."""
    info: CompiledProgramInfo | None = None

    def architecture(checkpoint: CheckpointInfo) -> TransformerBridge:
        nonlocal info
        if checkpoint.metadata.get("task") != TASK:
            raise CheckpointError(
                f"{ckpt_dir} is not a tracr checkpoint (task {checkpoint.metadata.get('task')!r}); "
                "give a directory written by `ftmech tracr finetune`"
            )
        name = checkpoint.metadata["program"]
        info, _ = _program_info(_program_files(name, None)[0], name)
        return compiled_architecture(info)

    model, checkpoint = load_checkpoint(ckpt_dir, architecture=architecture)
    return TracrCheckpoint(model=model, info=info, metadata=checkpoint.metadata)
