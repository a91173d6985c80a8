"""The fused LayerNorm and attention compute what TransformerLens's stock native modules compute: the same bits
where a hook reads the pattern, rounding-level differences where SDPA runs, and every hook still fires."""

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.generalized_components.normalization import NormalizationBridge
from transformer_lens.model_bridge.sources.native.model import NativeAttention

from interp import hooks
from interp.errors import ConfigError
from interp.fused_kernels import FusedCausalAttention, FusedLayerNorm, materialise_attention
from interp.models import LLAMA_STYLE, ModelConfig, bridge_config, build_model, copy_model

SHAPES = {
    "gpt": ModelConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64),
    "llama": ModelConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64, **LLAMA_STYLE),
}
ROUNDING = {"rtol": 1e-5, "atol": 1e-5}


def _pair(config: ModelConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our model and TransformerLens's stock native model of the same config and seed."""
    sized = config.for_task(d_vocab=11, n_ctx=12)
    return build_model(sized, device="cpu"), TransformerBridge.boot_native(bridge_config(sized), device="cpu")


def _tokens(seed: int, batch: int = 8) -> torch.Tensor:
    return torch.randint(0, 11, (batch, 12), generator=torch.Generator().manual_seed(seed))


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
def test_an_unhooked_forward_runs_sdpa_and_the_fused_layer_norm(shape: str, monkeypatch) -> None:
    ours, _ = _pair(SHAPES[shape])
    assert any(type(m) is FusedCausalAttention for m in ours.modules())
    assert (shape == "gpt") == any(type(m) is FusedLayerNorm for m in ours.modules())
    assert not any(type(m) in (NativeAttention, NormalizationBridge) for m in ours.modules())
    sdpa_calls = []
    sdpa = F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        sdpa_calls.append(1)
        return sdpa(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("a stock path ran")

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    monkeypatch.setattr(NativeAttention, "forward", refuse)
    monkeypatch.setattr(NormalizationBridge, "_python_norm_forward", refuse)
    monkeypatch.setattr(F, "softmax", refuse)
    ours(_tokens(0))
    assert len(sdpa_calls) == SHAPES[shape].n_layers


@pytest.mark.parametrize("shape", SHAPES)
def test_training_and_every_hooked_activation_match_the_stock_model_to_rounding(shape: str) -> None:
    ours, stock = _pair(SHAPES[shape])
    assert ours.state_dict().keys() == stock.state_dict().keys()
    tokens = _tokens(0)
    _, cache_ours = ours.run_with_cache(tokens)
    _, cache_stock = stock.run_with_cache(tokens)
    assert cache_ours.keys() == cache_stock.keys()
    for name in cache_stock.keys():
        torch.testing.assert_close(cache_ours[name], cache_stock[name], **ROUNDING, msg=name)
    torch.testing.assert_close(_train(ours, tokens, 5), _train(stock, tokens, 5), **ROUNDING)
    # parameters are not compared: AdamW scales the key biases' gradients, which are rounding noise (a key bias
    # shifts a query's scores by a constant), up to full steps that leave the outputs unchanged
    torch.testing.assert_close(ours(tokens), stock(tokens), **ROUNDING)


def test_training_is_bit_reproducible() -> None:
    runs = []
    for _ in range(2):
        ours, _ = _pair(SHAPES["gpt"])
        runs.append((_train(ours, _tokens(0), 5), [p.detach().clone() for p in ours.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_a_hooked_pattern_gives_the_stock_attention_bit_for_bit() -> None:
    ours, _ = _pair(SHAPES["gpt"])
    fused = ours.blocks[0].attn.original_component
    stock = copy_model(fused)
    stock.__class__ = NativeAttention
    x = torch.randn(4, 12, 32, generator=torch.Generator().manual_seed(0))
    seen = []
    with ours.hooks(fwd_hooks=[(hooks.attn_pattern(0), lambda p, hook: seen.append(p))]):
        out, pattern = fused(x, pattern_fn=ours.blocks[0].attn.hook_pattern)
    expected, expected_pattern = stock(x)
    assert torch.equal(out, expected) and torch.equal(pattern, expected_pattern)
    assert torch.equal(seen[0], expected_pattern)
    out, pattern = fused(x, pattern_fn=ours.blocks[0].attn.hook_pattern)
    assert pattern is None and not torch.equal(out, expected)
    torch.testing.assert_close(out, expected, **ROUNDING)


def test_a_layer_norm_hook_sees_the_stock_values_and_leaves_the_output_alone() -> None:
    ours, stock = _pair(SHAPES["gpt"])
    tokens = _tokens(1)
    name = "blocks.1.ln2.hook_scale"
    logits, cache = ours.run_with_cache(tokens, names_filter=[name, "blocks.1.ln2.hook_normalized"])
    assert torch.equal(logits, ours(tokens))
    _, stock_cache = stock.run_with_cache(tokens, names_filter=[name])
    torch.testing.assert_close(cache[name], stock_cache[name], **ROUNDING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doubled = ours.run_with_hooks(tokens, fwd_hooks=[(name, lambda scale, hook: 2 * scale)])
    assert not torch.allclose(doubled, logits, atol=1e-3)


def test_edits_and_gradients_reach_the_pattern_and_every_pattern_hook_fires() -> None:
    ours, stock = _pair(SHAPES["gpt"])
    tokens = _tokens(2, batch=4)
    uniform = [(hooks.attn_pattern(0), lambda p, hook: torch.tril(torch.ones_like(p)) / p.new_tensor(12.0))]
    edited = ours.run_with_hooks(tokens, fwd_hooks=uniform)
    torch.testing.assert_close(edited, stock.run_with_hooks(tokens, fwd_hooks=uniform), **ROUNDING)
    assert not torch.allclose(edited, ours(tokens), atol=1e-3)
    scores = "blocks.1.attn.hook_attn_scores"
    _, cache = ours.run_with_cache(tokens, names_filter=[scores])
    assert scores in cache
    grads = []
    ours.run_with_hooks(
        tokens, bwd_hooks=[(hooks.attn_pattern(1), lambda g, hook: grads.append(g))]
    ).sum().backward()
    assert len(grads) == 1 and grads[0].abs().sum() > 0


def test_a_copied_model_watches_its_own_hook_points() -> None:
    ours, _ = _pair(SHAPES["gpt"])
    copy = copy_model(ours)
    attn = copy.blocks[0].attn
    assert attn.original_component.pattern_hooks == (attn.hook_pattern, attn.hook_attn_scores)
    _, cache = copy.run_with_cache(_tokens(3), names_filter=[hooks.attn_pattern(0)])
    assert hooks.attn_pattern(0) in cache


def test_padding_takes_the_stock_path_and_bf16_autocast_the_explicit_attention(monkeypatch) -> None:
    ours, stock = _pair(dataclasses.replace(SHAPES["gpt"], seed=3))
    tokens = _tokens(4, batch=4)
    padding = torch.ones(4, 12, dtype=torch.long)
    padding[:, :3] = 0
    torch.testing.assert_close(
        ours(tokens, attention_mask=padding), stock(tokens, attention_mask=padding), **ROUNDING
    )

    def refuse(*args, **kwargs):
        raise AssertionError("SDPA ran in bf16 on a CPU")

    monkeypatch.setattr(F, "scaled_dot_product_attention", refuse)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(ours(tokens), stock(tokens), rtol=0.05, atol=0.05)


def test_a_materialised_model_keeps_the_stock_attention_and_its_patterns_for_backward(monkeypatch) -> None:
    ours, stock = _pair(SHAPES["gpt"])
    tokens = _tokens(4)
    materialise_attention(ours)
    ours.reset_hooks()  # the pass-through hooks are permanent

    def refuse(*args, **kwargs):
        raise AssertionError("SDPA ran in a materialised model")

    monkeypatch.setattr(F, "scaled_dot_product_attention", refuse)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        logits = ours(tokens)
    torch.testing.assert_close(logits, stock(tokens), **ROUNDING)
    assert sum(shape == (8, 4, 12, 12) for shape in saved) >= SHAPES["gpt"].n_layers  # a pattern per layer
    with pytest.raises(ConfigError, match="no attention"):
        materialise_attention(torch.nn.Linear(2, 2))
