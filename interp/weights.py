"""The only place state-dict weight names of ftmech's models are spelt (as ``interp.hooks`` is for hooks).

Models built by ``interp.models`` (TransformerLens ``TransformerBridge``) name their parameters
``blocks.{layer}.{attn|mlp}.{part}.{weight|bias}``; ``ln1``/``ln2`` are a block's norms.
"""

import re
from typing import Literal

Block = Literal["attn", "mlp"]
ATTN_PARTS = ("q", "k", "v", "o")  # query, key, value, output projections
MLP_PARTS = ("in", "gate", "out")  # MLP input, gate (gated MLPs only), output
EMBED = "embed.weight"
UNEMBED = "unembed.weight"
LN_FINAL = "ln_final.weight"

MATRIX_KEY = re.compile(r"^blocks\.(\d+)\.(attn|mlp)\.(q|k|v|o|in|gate|out)\.weight$")


def block_param(layer: int, block: Block, part: str, kind: Literal["weight", "bias"] = "weight") -> str:
    """``blocks.{layer}.{block}.{part}.{kind}``, e.g. ``blocks.1.attn.k.weight``."""
    return f"blocks.{layer}.{block}.{part}.{kind}"


def attn(layer: int, part: str, kind: Literal["weight", "bias"] = "weight") -> str:
    """An attention projection (``q``, ``k``, ``v`` or ``o``) of block ``layer``."""
    return block_param(layer, "attn", part, kind)


def mlp(layer: int, part: str, kind: Literal["weight", "bias"] = "weight") -> str:
    """An MLP matrix (``in``, ``gate`` or ``out``) of block ``layer``; ``in`` is (d_mlp, d_model)."""
    return block_param(layer, "mlp", part, kind)


def norm(layer: int, which: Literal["ln1", "ln2"]) -> str:
    """The gain of a block's pre-attention (``ln1``) or pre-MLP (``ln2``) norm."""
    return f"blocks.{layer}.{which}.weight"
