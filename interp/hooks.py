"""The only place TransformerLens hook names are spelt.

Each function returns the canonical TransformerLens 4.x name of one activation; the comment gives
its shape. Everything else in ftmech (and its users) builds names through these functions.
"""

from typing import Literal

EMBED = "hook_embed"  # [batch, pos, d_model]  token embedding
POS_EMBED = "hook_pos_embed"  # [batch, pos, d_model]  learned positional embedding


def resid_pre(layer: int) -> str:
    """Residual stream entering block ``layer``: [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_resid_pre"


def resid_mid(layer: int) -> str:
    """Residual stream between attention and MLP of block ``layer``: [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_resid_mid"


def resid_post(layer: int) -> str:
    """Residual stream leaving block ``layer``: [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_resid_post"


def attn_out(layer: int) -> str:
    """Attention output added to the residual stream: [batch, pos, d_model] (GAM: an alias of ``mixer_out``)."""
    return f"blocks.{layer}.hook_attn_out"


def mlp_out(layer: int) -> str:
    """MLP output added to the residual stream: [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_mlp_out"


def mlp_pre(layer: int) -> str:
    """MLP hidden pre-activation: [batch, pos, d_mlp]."""
    return f"blocks.{layer}.mlp.hook_pre"


def mlp_post(layer: int) -> str:
    """MLP hidden activation (the 'neurons'): [batch, pos, d_mlp]."""
    return f"blocks.{layer}.mlp.hook_post"


def attn_pattern(layer: int) -> str:
    """Attention probabilities: [batch, head_index, query_pos, key_pos]."""
    return f"blocks.{layer}.attn.hook_pattern"


def attn_z(layer: int) -> str:
    """Per-head attention values before the output projection: [batch, pos, head_index, d_head]."""
    return f"blocks.{layer}.attn.hook_z"


def mixer_out(layer: int) -> str:
    """GAM: the gated fusion of convolution and memory, added to the residual stream: [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_mixer_out"


def conv_out(layer: int) -> str:
    """GAM: the causal depthwise convolution's output (the local pathway): [batch, pos, d_model]."""
    return f"blocks.{layer}.mixer.hook_conv_out"


def memory_scores(layer: int) -> str:
    """GAM: each token's scores against the memory rows, before the softmax: [batch, pos, n_memory]."""
    return f"blocks.{layer}.mixer.hook_mem_scores"


def memory_pattern(layer: int) -> str:
    """GAM: the softmax over memory rows (the retrieval weights): [batch, pos, n_memory]."""
    return f"blocks.{layer}.mixer.hook_mem_pattern"


def memory_out(layer: int) -> str:
    """GAM: the retrieved weighted sum of memory rows (the global pathway): [batch, pos, d_model]."""
    return f"blocks.{layer}.mixer.hook_mem_out"


def gate(layer: int, pathway: Literal["local", "global"]) -> str:
    """GAM: the sigmoid gate on the local (convolution) or global (memory) pathway: [batch, pos, d_model]."""
    if pathway not in ("local", "global"):
        raise ValueError(f"pathway must be 'local' or 'global', got {pathway!r}")
    return f"blocks.{layer}.mixer.hook_gate_{pathway}"


def embedding_output() -> str:
    """Residual stream before block 0 (embedding + positions): [batch, pos, d_model]; probes call it B0."""
    return resid_pre(0)


def residual_stream(n_layers: int) -> list[str]:
    """Probe sites of the study: the embedding output (B0) then every block's output (B1..Bn)."""
    return [embedding_output()] + [resid_post(layer) for layer in range(n_layers)]


def block_outputs(n_layers: int, *, attn_only: bool = False) -> list[str]:
    """Each component that writes into the residual stream, in order: attn_out (and mlp_out) per block."""
    names: list[str] = []
    for layer in range(n_layers):
        names += [attn_out(layer)] if attn_only else [attn_out(layer), mlp_out(layer)]
    return names
