"""Gated Associative Memory (GAM; Acharya 2025, arXiv 2509.00605) as a TransformerLens ``HookedRootModule``.

The block, as the paper and its published code state it (x: the residual stream, [batch, pos, d_model]):

    n = LN1(x)
    local = causal depthwise Conv1d_k(n)            (one kernel of width k per channel, with bias)
    scores = n M^T;  p = softmax(scores);  glob = p M   (M: the memory bank, [n_memory, d_model], Xavier-uniform)
    g_local, g_global = split(W_gate n + b_gate)    (one Linear d_model -> 2 d_model)
    x = x + sigmoid(g_local) * local + sigmoid(g_global) * glob
    x = x + MLP(LN2(x))                             (d_model -> d_mlp -> d_model)

Learned absolute positions, a final LayerNorm and a linear head, as in the paper's code. The memory retrieval
reads no other position, so the only cross-position path is the convolution: depth L sees L(k-1)+1 tokens.

Choices the paper leaves open, and ours (the README's GAM table lists them too):

- memory scores are not scaled by 1/sqrt(d_model) (the code does not scale them; the text is silent);
- the memory bank serves as both keys and values (the code; the text does not say);
- the gates are computed from the normalised input n, not from the pathways' outputs (the code);
- no output projection after the fusion (none in the code);
- dropout 0.1 in the code; ours 0, as our transformer, so runs are deterministic;
- the code ties the token embedding to the head; ours are untied, as our transformer's, so the two models
  differ only in the sequence mixer (the head has no bias, as in the code and our transformer);
- initialisation besides the memory bank is not stated: PyTorch's defaults (as the code), except the token
  and position embeddings, N(0, 0.02^2) (the code's embedding is tied to the head and inherits its init);
- the MLP activation is the config's ``act_fn`` (the code: exact GELU; the GAM presets use it).

Hook names are those of ``interp.hooks``: the residual stream, embeddings and MLP hooks match the
transformer's, so every analysis that reads them runs unchanged. ``hooks.attn_out(l)`` is an alias of
``hooks.mixer_out(l)`` (the sequence mixer's output, added to the residual stream), so component patching
works too; there are no attention patterns.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from interp import hooks
from interp.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}
EMBED_STD = 0.02


@dataclass(frozen=True, kw_only=True)
class GAMConfig:
    """What a built GAM model exposes as ``model.cfg`` (the TransformerLens attribute names ftmech reads)."""

    d_vocab: int
    n_ctx: int
    n_layers: int
    d_model: int
    d_mlp: int
    conv_kernel: int  # width k of the causal depthwise convolution
    n_memory: int  # rows of each block's memory bank
    act_fn: str = "gelu"
    seed: int = 0
    n_heads: int = 1  # no attention; kept so pairs of models are compared field by field
    d_head: int = 1
    architecture: str = "gam"
    attn_only: bool = False
    gated_mlp: bool = False
    normalization_type: str = "LN"
    positional_embedding_type: str = "standard"
    device: str = "cpu"

    @property
    def receptive_field(self) -> int:
        """Tokens one position can read: L(k-1)+1 (the memory is per token)."""
        return receptive_field(self.n_layers, self.conv_kernel)


class GAMMixer(nn.Module):
    """The GAM sequence mixer: causal convolution and memory retrieval, fused per token by two gates."""

    def __init__(self, cfg: GAMConfig) -> None:
        super().__init__()
        self.kernel = cfg.conv_kernel
        self.conv = nn.Conv1d(cfg.d_model, cfg.d_model, cfg.conv_kernel, groups=cfg.d_model)
        self.memory = nn.Linear(
            cfg.d_model, cfg.n_memory, bias=False
        )  # weight: the bank M [n_memory, d_model]
        nn.init.xavier_uniform_(self.memory.weight)
        self.gate = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.hook_conv_out = HookPoint()  # [batch, pos, d_model]
        self.hook_mem_scores = HookPoint()  # [batch, pos, n_memory]
        self.hook_mem_pattern = HookPoint()  # [batch, pos, n_memory]
        self.hook_mem_out = HookPoint()  # [batch, pos, d_model]
        self.hook_gate_local = HookPoint()  # [batch, pos, d_model]
        self.hook_gate_global = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        padded = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))  # causal: position t reads t-k+1..t
        local = self.hook_conv_out(self.conv(padded).transpose(1, 2))
        scores = self.hook_mem_scores(self.memory(x))
        pattern = self.hook_mem_pattern(scores.softmax(-1))
        retrieved = self.hook_mem_out(pattern @ self.memory.weight)
        g_local, g_global = self.gate(x).chunk(2, dim=-1)
        g_local = self.hook_gate_local(torch.sigmoid(g_local))
        g_global = self.hook_gate_global(torch.sigmoid(g_global))
        return g_local * local + g_global * retrieved


class GAMMLP(nn.Module):
    """The block's MLP, named like the transformer's (``in``, ``out``) so neuron pruning finds it."""

    def __init__(self, cfg: GAMConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[cfg.act_fn]
        setattr(self, "in", nn.Linear(cfg.d_model, cfg.d_mlp))
        self.out = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(getattr(self, "in")(x))
        return self.out(self.hook_post(self.act(pre)))


class GAMBlock(nn.Module):
    """Pre-norm residual block: x + mixer(LN1 x), then + MLP(LN2 x)."""

    def __init__(self, cfg: GAMConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.mixer = GAMMixer(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = GAMMLP(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_mixer_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_mixer_out(self.mixer(self.ln1(x))))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln2(x))))


class GAMModel(HookedRootModule):
    """A decoder-only GAM language model with TransformerLens hooks; ``model(tokens)`` returns logits."""

    def __init__(self, cfg: GAMConfig) -> None:
        super().__init__()
        if cfg.act_fn not in ACTIVATIONS:
            raise ConfigError(f"unknown act_fn '{cfg.act_fn}'; use one of {', '.join(ACTIVATIONS)}")
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)
            nn.init.normal_(self.embed.weight, std=EMBED_STD)
            nn.init.normal_(self.pos_embed.weight, std=EMBED_STD)
            self.blocks = nn.ModuleList([GAMBlock(cfg) for _ in range(cfg.n_layers)])
            self.ln_final = nn.LayerNorm(cfg.d_model)
            self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.aliases = {hooks.attn_out(layer): hooks.mixer_out(layer) for layer in range(cfg.n_layers)}
        self.setup()

    def setup(self) -> None:
        """TransformerLens's hook registry, plus each alias pointing at its hook point."""
        super().setup()
        for alias, name in self.aliases.items():
            self.hook_dict[alias] = self.hook_dict[name]
            self.mod_dict[alias] = self.mod_dict[name]

    def forward(
        self, tokens: Int[Tensor, "batch pos"], *, stop_at_layer: int | None = None
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits, or the residual stream entering block ``stop_at_layer`` when it is given."""
        n_pos = tokens.shape[-1]
        if n_pos > self.cfg.n_ctx:
            raise ConfigError(f"sequences of {n_pos} tokens exceed the model's n_ctx {self.cfg.n_ctx}")
        positions = torch.arange(n_pos, device=tokens.device)
        x = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(positions))[None]
        for block in self.blocks[:stop_at_layer]:
            x = block(x)
        if stop_at_layer is not None:
            return x
        return self.unembed(self.ln_final(x))

    def run_with_cache(self, *model_args: Any, **kwargs: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """TransformerLens's ``run_with_cache``; a cached hook is also filed under its aliases."""
        out, cache = super().run_with_cache(*model_args, **kwargs)
        for alias, name in self.aliases.items():
            if name in cache:
                cache[alias] = cache[name]
        return out, cache


def build_gam(cfg: GAMConfig, device: torch.device | str = "cpu") -> GAMModel:
    """A GAM model initialised from ``cfg.seed`` on the CPU (bit-reproducible), then moved to ``device``."""
    return GAMModel(cfg).to(device)


def receptive_field(n_layers: int, conv_kernel: int) -> int:
    """Tokens a GAM of ``n_layers`` blocks with kernel ``conv_kernel`` reads at one position."""
    return n_layers * (conv_kernel - 1) + 1


def matched_memory(d_model: int, conv_kernel: int) -> int:
    """Memory rows that give a GAM mixer exactly the parameters of a transformer's attention (4d^2 + 4d):
    conv d(k+1), memory M d and gate 2d^2 + 2d, so M = 2d + 1 - k."""
    return 2 * d_model + 1 - conv_kernel


def smallest_kernel(n_layers: int, window: int) -> int:
    """The smallest convolution width whose receptive field covers ``window`` tokens."""
    return max(1, math.ceil((window - 1) / n_layers) + 1)
