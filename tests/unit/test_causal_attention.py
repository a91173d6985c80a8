"""The additive-mask attention computes what TransformerLens's own native attention computes, bit for bit."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources.native.model import NativeAttention

from interp import hooks
from interp.causal_attention import AdditiveMaskAttention
from interp.models import LLAMA_STYLE, ModelConfig, bridge_config, build_model

SHAPES = {
    "gpt": ModelConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64),
    "llama": ModelConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64, **LLAMA_STYLE),
}


def _pair(config: ModelConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our model and TransformerLens's stock native model of the same config and seed."""
    sized = config.for_task(d_vocab=11, n_ctx=12)
    return build_model(sized, device="cpu"), TransformerBridge.boot_native(bridge_config(sized), device="cpu")


def _train(model: torch.nn.Module, tokens: torch.Tensor, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("shape", SHAPES)
def test_our_models_take_the_additive_path(shape: str, monkeypatch) -> None:
    ours, _ = _pair(SHAPES[shape])

    def refuse(*args, **kwargs):
        raise AssertionError("the stock masked_fill attention ran")

    monkeypatch.setattr(NativeAttention, "forward", refuse)
    ours(torch.zeros(2, 12, dtype=torch.long))


@pytest.mark.parametrize("shape", SHAPES)
def test_training_and_every_hooked_activation_match_the_stock_attention_bit_for_bit(shape: str) -> None:
    ours, stock = _pair(SHAPES[shape])
    assert all(type(m) is AdditiveMaskAttention for m in ours.modules() if isinstance(m, NativeAttention))
    assert any(type(m) is NativeAttention for m in stock.modules())
    assert ours.state_dict().keys() == stock.state_dict().keys()
    tokens = torch.randint(0, 11, (8, 12), generator=torch.Generator().manual_seed(0))
    assert _train(ours, tokens, 5) == _train(stock, tokens, 5)
    for a, b in zip(ours.parameters(), stock.parameters(), strict=True):
        assert torch.equal(a, b)
    _, cache_ours = ours.run_with_cache(tokens)
    _, cache_stock = stock.run_with_cache(tokens)
    assert cache_ours.keys() == cache_stock.keys()
    for name in cache_stock.keys():
        assert torch.equal(cache_ours[name], cache_stock[name]), name


def test_a_pattern_hook_still_reweights_the_output_and_padding_masks_take_the_stock_path() -> None:
    ours, stock = _pair(SHAPES["gpt"])
    tokens = torch.randint(0, 11, (4, 12), generator=torch.Generator().manual_seed(1))
    uniform = [(hooks.attn_pattern(0), lambda p, hook: torch.tril(torch.ones_like(p)) / p.new_tensor(12.0))]
    assert torch.equal(
        ours.run_with_hooks(tokens, fwd_hooks=uniform), stock.run_with_hooks(tokens, fwd_hooks=uniform)
    )
    assert not torch.equal(ours.run_with_hooks(tokens, fwd_hooks=uniform), ours(tokens))
    padding = torch.ones(4, 12, dtype=torch.long)
    padding[:, :3] = 0
    assert torch.equal(ours(tokens, attention_mask=padding), stock(tokens, attention_mask=padding))


def test_bf16_autocast_gives_the_stock_logits() -> None:
    ours, stock = _pair(dataclasses.replace(SHAPES["gpt"], seed=3))
    tokens = torch.randint(0, 11, (4, 12), generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(ours(tokens), stock(tokens))
