"""TransformerLens's native attention and LayerNorm on fused kernels wherever no hook reads what lies inside them.

A ``TransformerBridge`` computes each LayerNorm from scratch in Python (nine kernels forward, more backward) so
that ``hook_scale`` and ``hook_normalized`` see their values, and computes every attention pattern explicitly for
``hook_pattern``. Where nothing is hooked there, ``F.layer_norm`` and ``F.scaled_dot_product_attention`` compute
the same functions in one kernel each. ``use_fused_kernels`` switches a bridge's modules to the classes below:

- ``FusedLayerNorm``: the output is always ``nn.LayerNorm``'s, hooked or not. A hook on the scale or the
  normalized values runs TransformerLens's native-autograd path, which computes them beside that output and
  rebuilds the output only if a hook edits them; observing a LayerNorm changes no bit downstream.
- ``FusedCausalAttention``: with no hook on ``hook_pattern`` or ``hook_attn_scores``, SDPA (except in half
  precision on a CPU, where torch's SDPA is several times slower than the explicit attention). Otherwise the
  explicit pattern, causal mask added rather than filled in (a broadcast ``masked_fill`` costs about ten times an
  add on a CPU), which is TransformerLens's stock result bit for bit. The two differ in rounding (about 1e-6 of a
  logit), as SDPA and eager attention do in Hugging Face models: ``run_with_cache`` with the patterns in its
  filter, or a pattern patched into its own model, gives ``model()``'s logits to rounding, not bit for bit. A
  padding mask, score soft-cap or grouped keys run the stock forward.

Neither class adds parameters or buffers, so state dicts and the bridge's references are unchanged.
``materialise_attention`` pins a model to the explicit attention, for comparisons against that baseline.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge
from transformer_lens.model_bridge.generalized_components.normalization import NormalizationBridge
from transformer_lens.model_bridge.sources.native.model import NativeAttention
from transformer_lens.utilities.activation_functions import softcap_enabled

from interp.errors import ConfigError


def _hooked(*points: nn.Module) -> bool:
    """Whether any of ``points`` has a forward or backward hook (``add_hook`` or a plain torch hook)."""
    return any(
        p._forward_hooks or p._forward_pre_hooks or p._backward_hooks or p._backward_pre_hooks for p in points
    )


def _slow_sdpa(q: torch.Tensor) -> bool:
    """Whether SDPA would run on a CPU in bf16 or fp16 (autocast): there it took 23 ms forward and backward on the
    cpu preset's attention against 4.0 ms in fp32, and the explicit attention 3.9 ms in bf16 (torch 2.13, AVX-512
    with native bf16)."""
    return q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)


class FusedLayerNorm(NormalizationBridge):
    """A LayerNorm bridge whose output is the wrapped ``nn.LayerNorm``'s; its inner hooks cost nothing unless
    hooked."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        if _hooked(self.hook_scale, self.hook_normalized):
            return super().forward(hidden_states, **kwargs)
        x = self.hook_in(hidden_states)
        return self.hook_out(self.original_component(x).to(x.dtype))


class FusedCausalAttention(NativeAttention):
    """``NativeAttention`` that runs SDPA unless a hook reads the pattern (see the module docstring).
    ``pattern_hooks`` are its bridge's ``hook_pattern`` and ``hook_attn_scores``; without them (a module used
    outside a bridge) the pattern is always computed, as the stock module does."""

    pattern_hooks: tuple[nn.Module, ...] = ()

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        pattern_fn=None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        stock = attention_mask is not None or not self.causal or self.kv_repeats > 1
        if stock or softcap_enabled(self.attn_scores_soft_cap):
            return super().forward(hidden_states, attention_mask, position_ids, pattern_fn, **kwargs)
        batch, seq, _ = hidden_states.shape
        q = self.q(hidden_states).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(hidden_states).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        v = self.v(hidden_states).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        if self.rotary is not None:
            q, k = self.rotary.apply_rope(q, k, position_ids=position_ids)
        if not self.pattern_hooks or _hooked(*self.pattern_hooks) or _slow_sdpa(q):
            scores = torch.matmul(q, k.transpose(-2, -1)) / self.scale
            mask = torch.zeros((seq, seq), dtype=scores.dtype, device=scores.device)
            pattern = F.softmax(
                scores + mask.masked_fill_(self.causal_mask[:seq, :seq], float("-inf")), dim=-1
            )
            if pattern_fn is not None:
                pattern = pattern_fn(pattern)
            attn = torch.matmul(pattern, v)
        else:
            pattern = None
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / self.scale)
        return self.o(attn.transpose(1, 2).contiguous().view(batch, seq, -1)), pattern


def use_fused_kernels(model: nn.Module) -> nn.Module:
    """``model`` with each LayerNorm bridge and native attention switched, in place, to the fused classes above
    (TransformerLens's RMSNorm bridge already runs its wrapped module natively and is left as it is)."""
    for module in model.modules():
        if type(module) is NormalizationBridge and isinstance(module.original_component, nn.LayerNorm):
            module.__class__ = FusedLayerNorm
            module.use_native_layernorm_autograd = True
        elif isinstance(module, AttentionBridge) and type(module.original_component) is NativeAttention:
            module.original_component.__class__ = FusedCausalAttention
            module.original_component.pattern_hooks = (module.hook_pattern, module.hook_attn_scores)
    return model


def _keep(pattern: torch.Tensor, hook: nn.Module) -> torch.Tensor:
    return pattern


def materialise_attention(model: nn.Module) -> nn.Module:
    """``model`` with every attention pattern computed explicitly and kept for backward (an N x N tensor per
    head), as TransformerLens's stock attention and the usual reference transformer compute it: a permanent
    pass-through hook on each ``hook_pattern`` selects ``FusedCausalAttention``'s explicit path. The baseline for
    cost comparisons that assume quadratic attention memory; returns ``model``, changed in place."""
    bridges = [m for m in model.modules() if isinstance(m, AttentionBridge)]
    if not bridges:
        raise ConfigError(f"{type(model).__name__} has no attention whose pattern could be materialised")
    for bridge in bridges:
        bridge.hook_pattern.add_hook(_keep, is_permanent=True)
    return model
