"""The only place state-dict weight names of ftmech's models are spelt (as ``interp.hooks`` is for hooks).

Models built by ``interp.models`` (TransformerLens ``TransformerBridge``) name their parameters
``blocks.{layer}.{attn|mlp}.{part}.{weight|bias}``; ``ln1``/``ln2`` are a block's norms. A GAM block
(``interp.gam``) has ``mixer`` in place of ``attn``: its memory bank ``memory`` (rows are memory slots), its
``gate`` and its convolution ``conv`` (not a matrix).
"""

import re
from typing import Literal

import torch
from torch import Tensor

Block = Literal["attn", "mlp", "mixer"]
ATTN_PARTS = ("q", "k", "v", "o")  # query, key, value, output projections
MLP_PARTS = ("in", "gate", "out")  # MLP input, gate (gated MLPs only), output
EMBED = "embed.weight"
UNEMBED = "unembed.weight"
LN_FINAL = "ln_final.weight"

MATRIX_KEY = re.compile(r"^blocks\.(\d+)\.(attn|mlp|mixer)\.(q|k|v|o|in|gate|out|memory)\.weight$")


def block_param(layer: int, block: Block, part: str, kind: Literal["weight", "bias"] = "weight") -> str:
    """``blocks.{layer}.{block}.{part}.{kind}``, e.g. ``blocks.1.attn.k.weight``."""
    return f"blocks.{layer}.{block}.{part}.{kind}"


def attn(layer: int, part: str, kind: Literal["weight", "bias"] = "weight") -> str:
    """An attention projection (``q``, ``k``, ``v`` or ``o``) of block ``layer``."""
    return block_param(layer, "attn", part, kind)


def mlp(layer: int, part: str, kind: Literal["weight", "bias"] = "weight") -> str:
    """An MLP matrix (``in``, ``gate`` or ``out``) of block ``layer``; ``in`` is (d_mlp, d_model)."""
    return block_param(layer, "mlp", part, kind)


def memory(layer: int) -> str:
    """The memory bank of GAM block ``layer``: [n_memory, d_model], one row per memory slot."""
    return block_param(layer, "mixer", "memory")


def norm(layer: int, which: Literal["ln1", "ln2"]) -> str:
    """The gain of a block's pre-attention (``ln1``) or pre-MLP (``ln2``) norm."""
    return f"blocks.{layer}.{which}.weight"


def transposed_keys(model: torch.nn.Module) -> frozenset[str]:
    """Keys of the weight matrices stored [in, out] (Hugging Face ``Conv1D``, the GPT-2 family) rather than
    torch's [out, in]; every other matrix of a TransformerLens model is [out, in]."""
    keys = set()
    for key in model.state_dict():
        if MATRIX_KEY.match(key):
            owner = model.get_submodule(key.rsplit(".", 1)[0])
            if any(type(m).__name__ == "Conv1D" for m in owner.modules()):
                keys.add(key)
    return frozenset(keys)


def torch_layout(tensors: dict[str, Tensor], transposed: frozenset[str]) -> dict[str, Tensor]:
    """``tensors`` with each key in ``transposed`` viewed as [out, in] (a view: writes reach the original)."""
    return {key: (value.T if key in transposed else value) for key, value in tensors.items()}
