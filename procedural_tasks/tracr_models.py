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

from interp.errors import CheckpointError, ConfigError
from procedural_tasks import tracr_programs
from procedural_tasks.tracr_programs import ProgramConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "tracr_weights"
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


def tracr_state_dict(
    params: dict[str, np.ndarray], info: CompiledProgramInfo, *, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """Tracr's raw parameters as a TransformerBridge state dict (keys as `model.state_dict()` names them)."""

    def linear(module: str) -> tuple[Tensor, Tensor]:
        return _tensor(params, f"{module}/w", dtype).T.contiguous(), _tensor(params, f"{module}/b", dtype)

    state = {
        "embed.weight": _tensor(params, "token_embed/embeddings", dtype),
        "pos_embed.weight": _tensor(params, "pos_embed/embeddings", dtype),
        "unembed.weight": _unembed(info, dtype).T.contiguous(),
        "unembed.bias": torch.zeros(len(info.output_encoding), dtype=dtype),
    }
    for layer in range(info.bridge_config["n_layers"]):
        prefix = f"transformer/layer_{layer}"
        parts = {
            "attn.q": "attn/query",
            "attn.k": "attn/key",
            "attn.v": "attn/value",
            "attn.o": "attn/linear",
            "mlp.in": "mlp/linear_1",
            "mlp.out": "mlp/linear_2",
        }
        for ours, theirs in parts.items():
            weight, bias = linear(f"{prefix}/{theirs}")
            state[f"blocks.{layer}.{ours}.weight"] = weight
            state[f"blocks.{layer}.{ours}.bias"] = bias
    return state


def _tensor(params: dict[str, np.ndarray], key: str, dtype: torch.dtype) -> Tensor:
    if key not in params:
        raise CheckpointError(f"tracr weights lack {key!r}; recompile with scripts/compile_tracr.py")
    return torch.tensor(params[key], dtype=dtype)


def _unembed(info: CompiledProgramInfo, dtype: torch.dtype) -> Float[Tensor, "d_model n_classes"]:
    """One-hot projection from the output label's residual directions onto the output classes."""
    index = {label: i for i, label in enumerate(info.residual_labels)}
    unembed = torch.zeros(len(index), len(info.output_encoding), dtype=dtype)
    for value, class_id in info.output_encoding.items():
        label = f"{info.output_label}:{value}"
        if label not in index:
            raise CheckpointError(
                f"residual labels lack the output direction {label!r}; the JSON is inconsistent"
            )
        unembed[index[label], class_id] = 1.0
    return unembed


def read_compiled(
    name: str, *, weights_dir: Path | None = None
) -> tuple[dict[str, np.ndarray], CompiledProgramInfo]:
    """Read and check `{name}.safetensors` and `{name}.json`; raise CheckpointError on any problem."""
    if name not in tracr_programs.PROGRAMS:
        raise ConfigError(
            f"unknown tracr program {name!r}; choose one of {', '.join(tracr_programs.PROGRAMS)}"
        )
    folder = WEIGHTS_DIR if weights_dir is None else Path(weights_dir)
    json_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    for path in (json_path, weights_path):
        if not path.is_file():
            raise CheckpointError(
                f"tracr weights file {path} is missing; reinstall ftmech or run scripts/compile_tracr.py in a tracr venv"
            )
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
    if info.versions.get("format") != tracr_programs.FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has format {info.versions.get('format')!r}, this code reads {tracr_programs.FORMAT_VERSION}; "
            "recompile with scripts/compile_tracr.py"
        )
    if info.name != name:
        raise CheckpointError(f"{json_path} holds program {info.name!r}, not {name!r}")
    if info.input_encoding != tracr_programs.input_encoding_for(config) or info.output_encoding != (
        tracr_programs.output_encoding_for(config)
    ):
        raise CheckpointError(f"{json_path} has encodings that differ from the {name} program's; recompile")
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


def load_compiled(
    name: str, *, weights_dir: Path | None = None, dtype: str = "float32", device: str = "cpu"
) -> tuple[TransformerBridge, CompiledProgramInfo]:
    """The compiled `name` ("counter" or "max_identifier") as a TransformerBridge, and what it means.

    Logits have one class per answer value (`info.output_encoding`); every non-BOS position carries the
    answer. The caller's RNG is untouched (construction runs in `boot_native`'s forked RNG).
    """
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype {dtype!r} is not supported for tracr models; give 'float32' or 'float64'")
    torch_dtype = getattr(torch, dtype)
    params, info = read_compiled(name, weights_dir=weights_dir)
    fields = info.bridge_config
    config = TransformerBridgeConfig(
        **fields,
        attn_scale=math.sqrt(fields["d_head"]),
        model_name=f"tracr-{name}",
        seed=0,
        dtype=torch_dtype,
    )
    model = TransformerBridge.boot_native(config, device=device, dtype=torch_dtype)
    state = tracr_state_dict(params, info, dtype=torch_dtype)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    given = {key: tuple(value.shape) for key, value in state.items()}
    if missing := sorted(set(expected) - set(given)):
        raise CheckpointError(
            f"tracr weights for {name} lack {missing[:3]}; recompile with scripts/compile_tracr.py"
        )
    if extra := sorted(set(given) - set(expected)):
        raise CheckpointError(f"tracr weights for {name} have unexpected {extra[:3]}; recompile")
    for key, shape in given.items():
        if expected[key] != shape:
            raise CheckpointError(
                f"tracr weights for {name} give {key} shape {shape} but the model built from the JSON "
                f"expects {expected[key]}; the files do not belong together, recompile"
            )
    model.load_state_dict({key: value.to(device) for key, value in state.items()}, strict=True)
    model.eval()
    return model, info
