"""ModelConfig -> TransformerLens model: the one place models are built.

Transformers are TL-native models booted with ``TransformerBridge.boot_native`` (no hub access), so every
TransformerLens tool (hooks, ``run_with_cache``, patching) works on them; ``architecture="gam"`` builds a
Gated Associative Memory model (``interp.gam``), a ``HookedRootModule`` with the same residual-stream hooks.
"""

import contextlib
import copy
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Literal

import torch
import transformer_lens.model_bridge.sources.native  # noqa: F401  (attaches TransformerBridge.boot_native)
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from interp.errors import ConfigError
from interp.fused_kernels import use_fused_kernels
from interp.gam import GAMConfig, GAMModel, build_gam
from interp.runtime import resolve_device

ACT_FNS = ("gelu", "gelu_new", "relu", "silu")
ARCHITECTURES = ("transformer", "gam")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture of a decoder-only model (names as in TransformerLens): a transformer, or a GAM, whose
    blocks replace attention by a causal convolution and a memory bank (``interp.gam``; n_heads unused)."""

    n_layers: int  # transformer blocks
    d_model: int  # residual stream width
    n_heads: int  # attention heads per block
    d_mlp: int  # MLP hidden width (ignored when attn_only)
    d_vocab: int | None = None  # vocabulary size; set from the task's vocabulary
    n_ctx: int | None = None  # context length; set from the task's sequence length
    d_head: int | None = None  # per-head width; None means d_model // n_heads
    act_fn: str = "gelu_new"  # MLP activation: gelu, gelu_new, relu, silu
    normalization: Literal["LN", "RMS", "none"] = "LN"  # LayerNorm, RMSNorm or none (tracr)
    positional: Literal["standard", "rotary"] = "standard"  # learned absolute positions or RoPE
    gated_mlp: bool = False  # SwiGLU-style gated MLP (LLaMA)
    attn_only: bool = False  # blocks without MLPs
    seed: int = 0  # initialisation seed
    architecture: Literal["transformer", "gam"] = "transformer"  # attention blocks, or GAM blocks
    conv_kernel: int = 3  # GAM only: width of the causal depthwise convolution (the paper's 3)
    n_memory: int = 512  # GAM only: rows of each block's memory bank (the paper's 512)

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_mlp"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model {name} must be >= 1, got {getattr(self, name)}")
        for name in ("d_vocab", "n_ctx", "d_head"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"model {name} must be >= 1 or unset, got {value}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; set d_head explicitly"
            )
        if self.act_fn not in ACT_FNS:
            raise ConfigError(f"unknown act_fn '{self.act_fn}'; use one of {', '.join(ACT_FNS)}")
        if self.normalization not in ("LN", "RMS", "none"):
            raise ConfigError(f"unknown normalization '{self.normalization}'; use LN, RMS or none")
        if self.positional not in ("standard", "rotary"):
            raise ConfigError(f"unknown positional '{self.positional}'; use standard or rotary")
        if self.positional == "rotary" and self.head_dim % 2:
            raise ConfigError(f"rotary positions need an even d_head, got {self.head_dim}")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"unknown architecture '{self.architecture}'; use one of {', '.join(ARCHITECTURES)}"
            )
        for name in ("conv_kernel", "n_memory"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model {name} must be >= 1, got {getattr(self, name)}")
        if self.architecture == "gam":
            self._check_gam()

    def _check_gam(self) -> None:
        """The GAM block is the paper's: LayerNorm, learned positions, a plain MLP."""
        unsupported = {
            "normalization": (self.normalization, "LN"),
            "positional": (self.positional, "standard"),
            "gated_mlp": (self.gated_mlp, False),
            "attn_only": (self.attn_only, False),
        }
        for name, (value, required) in unsupported.items():
            if value != required:
                raise ConfigError(f"architecture 'gam' needs {name}={required!r}, got {value!r}")

    @property
    def head_dim(self) -> int:
        """Per-head width actually used."""
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    def for_task(self, *, d_vocab: int, n_ctx: int) -> "ModelConfig":
        """This architecture sized for a task's vocabulary and sequence length."""
        return dataclasses.replace(self, d_vocab=d_vocab, n_ctx=n_ctx)


# RMSNorm, rotary positions and a SwiGLU MLP: the LLaMA-style story models.
LLAMA_STYLE: dict[str, Any] = {
    "act_fn": "silu",
    "normalization": "RMS",
    "positional": "rotary",
    "gated_mlp": True,
}

PRESETS: dict[str, ModelConfig] = {
    # The smallest config found to learn the PCFG counting tasks on a 2-core CPU in minutes.
    "cpu": ModelConfig(n_layers=3, d_model=64, n_heads=4, d_mlp=256),
    # The study's minGPT (App. C.2): 6 blocks, 6 heads, d_model 192, GELU MLP 4x, LayerNorm.
    "paper": ModelConfig(n_layers=6, d_model=192, n_heads=6, d_mlp=768),
    # For tests and smoke runs: builds and trains in milliseconds.
    "tiny": ModelConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32),
    "llama_cpu": ModelConfig(n_layers=4, d_model=128, n_heads=4, d_mlp=344, **LLAMA_STYLE),
    # The study's TinyStories model (91M): dim 768, 12 layers, 12 heads, SwiGLU hidden 2048.
    "llama_91m": ModelConfig(n_layers=12, d_model=768, n_heads=12, d_mlp=2048, **LLAMA_STYLE),
    # The cpu preset's depth and widths with GAM blocks: the paper's kernel 3 and exact GELU; 126 memory rows
    # give it exactly the cpu transformer's parameter count (interp.gam.matched_memory).
    "gam_cpu": ModelConfig(
        n_layers=3, d_model=64, n_heads=1, d_mlp=256, act_fn="gelu", architecture="gam", n_memory=126
    ),
    "gam_tiny": ModelConfig(
        n_layers=2, d_model=16, n_heads=1, d_mlp=32, act_fn="gelu", architecture="gam", n_memory=8
    ),
}


def preset(name: str) -> ModelConfig:
    """A named architecture preset; an unknown name is a ConfigError listing the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset '{name}'; use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _check_sized(config: ModelConfig) -> None:
    if config.d_vocab is None or config.n_ctx is None:
        raise ConfigError("model d_vocab and n_ctx must be set before building; use ModelConfig.for_task")


def bridge_config(config: ModelConfig) -> TransformerBridgeConfig:
    """The TransformerLens config for ``config`` (d_vocab and n_ctx must be set)."""
    _check_sized(config)
    return TransformerBridgeConfig(
        d_model=config.d_model,
        d_head=config.head_dim,
        n_layers=config.n_layers,
        n_ctx=config.n_ctx,
        n_heads=config.n_heads,
        d_vocab=config.d_vocab,
        d_mlp=config.d_mlp,
        act_fn=config.act_fn,
        normalization_type=None if config.normalization == "none" else config.normalization,
        final_rms=config.normalization == "RMS",
        positional_embedding_type=config.positional,
        gated_mlp=config.gated_mlp,
        attn_only=config.attn_only,
        seed=config.seed,
    )


def gam_config(config: ModelConfig) -> GAMConfig:
    """The ``interp.gam`` config for a GAM ``config`` (d_vocab and n_ctx must be set)."""
    _check_sized(config)
    return GAMConfig(
        d_vocab=config.d_vocab,
        n_ctx=config.n_ctx,
        n_layers=config.n_layers,
        d_model=config.d_model,
        d_mlp=config.d_mlp,
        conv_kernel=config.conv_kernel,
        n_memory=config.n_memory,
        act_fn=config.act_fn,
        seed=config.seed,
        n_heads=config.n_heads,
        d_head=config.head_dim,
    )


def build_model(config: ModelConfig, *, device: str = "cpu") -> TransformerBridge | GAMModel:
    """A randomly initialised model for ``config``, seeded by ``config.seed``: a TransformerBridge
    (its LayerNorms and attention on fused kernels where unhooked, ``interp.fused_kernels``), or a ``GAMModel``
    for ``architecture="gam"``.

    Construction runs inside ``fork_rng``, so the caller's global RNG is left untouched.
    """
    if config.architecture == "gam":
        return build_gam(gam_config(config), device=resolve_device(device))
    bridge = TransformerBridge.boot_native(bridge_config(config), device=resolve_device(device))
    return use_fused_kernels(bridge)


def n_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def to_device(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """``model`` moved to ``device``; TransformerLens's "Moving model to device" note goes to stderr, where it
    cannot corrupt a command's JSON on stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        return model.to(resolve_device(device))


def model_device(model: torch.nn.Module) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model``. Tensors a forward pass left cached on its modules (a Hugging Face bridge keeps
    the last attention pattern, still attached to its autograd graph) are copied detached, which plain
    ``copy.deepcopy`` refuses to do."""
    memo: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach()
    return copy.deepcopy(model, memo)
