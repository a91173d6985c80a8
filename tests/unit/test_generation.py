"""interp.generation: the key/value-cached decoder equals the TransformerLens model's own forward (every step,
left-padded prompts included), cached greedy decoding equals uncached greedy decoding, and models the cache does
not support fall back to their own forward."""

import dataclasses

import pytest
import torch

from interp.errors import ConfigError
from interp.generation import CachedDecoder, left_pad, sample_tokens
from interp.models import PRESETS, build_model
from interp.runtime import torch_generator

ATOL = 1e-5


def tiny_llama(d_vocab: int = 60, n_ctx: int = 40, seed: int = 0):
    """A LLaMA-style architecture (RMSNorm, rotary, gated SiLU MLP) at test size."""
    cfg = dataclasses.replace(PRESETS["llama_cpu"], d_model=16, n_layers=2, n_heads=2, d_mlp=24, seed=seed)
    return cfg.for_task(d_vocab=d_vocab, n_ctx=n_ctx)


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Weights moved off their initialisation (norm gains and biases included), in eval mode."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch_generator(1)))
    return model.eval()


@pytest.fixture(scope="module")
def llama():
    return perturbed(build_model(tiny_llama()))


def greedy_uncached(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding with the model's own forward on the whole sequence at every step."""
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt) :]


def test_cached_decoder_matches_the_bridge_forward_with_left_padding(llama):
    prompts = [[1, 5, 9, 3, 7], [1, 4, 8]]
    tokens, valid = left_pad(prompts, 0)
    decoder = CachedDecoder(llama)
    logits = decoder.forward(tokens, valid)
    step = torch.tensor([[11], [12]])
    nxt = decoder.forward(step, torch.ones_like(step, dtype=torch.bool))
    with torch.no_grad():
        for i, p in enumerate(prompts):
            ref = llama(torch.tensor([p + [int(step[i, 0])]]))
            assert torch.allclose(logits[i, -1], ref[0, -2], atol=1e-4)
            assert torch.allclose(nxt[i, -1], ref[0, -1], atol=1e-4)


def test_cached_logits_equal_the_forward_at_every_position_and_step(llama):
    prompts = [[1, 5, 9, 3, 7, 2], [1, 4], [1, 30, 31, 32]]
    continuations = [[11, 12, 13, 14, 15, 16], [21, 22, 23, 24, 25, 26], [40, 41, 42, 43, 44, 45]]
    tokens, valid = left_pad(prompts, 0)
    decoder = CachedDecoder(llama)
    prompt_logits = decoder.forward(tokens, valid)
    step_logits = []
    for t in range(len(continuations[0])):
        step = torch.tensor([[c[t]] for c in continuations])
        step_logits.append(decoder.forward(step, torch.ones_like(step, dtype=torch.bool))[:, -1])
    width = tokens.shape[1]
    with torch.no_grad():
        for i, (prompt, more) in enumerate(zip(prompts, continuations, strict=True)):
            ref = llama(torch.tensor([prompt + more]))[0]
            # every real prompt position (left padding shifts row i right by width - len(prompt))
            got = prompt_logits[i, width - len(prompt) :]
            assert torch.allclose(got, ref[: len(prompt)], atol=ATOL), (got - ref[: len(prompt)]).abs().max()
            for t, logits in enumerate(step_logits):
                assert torch.allclose(logits[i], ref[len(prompt) + t], atol=ATOL), t


def test_cached_greedy_generation_equals_uncached_greedy_decoding(llama):
    prompts = [[1, 5, 9], [1, 4, 8, 8, 3], [1, 3], [1, 17, 18, 19]]
    n = 12
    cached = sample_tokens(llama, prompts, max_new_tokens=n, generator=torch_generator(0), temperature=0)
    assert cached == [greedy_uncached(llama, p, n) for p in prompts]


def test_sample_tokens_is_seeded_and_stops_at_eos():
    model = build_model(tiny_llama())
    prompts = [[1, 5, 9], [1, 4, 8, 8], [1, 3]]
    a = sample_tokens(model, prompts, max_new_tokens=12, generator=torch_generator(4), eos_id=2)
    b = sample_tokens(model, prompts, max_new_tokens=12, generator=torch_generator(4), eos_id=2)
    assert a == b
    assert all(len(r) <= 12 for r in a)
    assert all(2 not in r[:-1] for r in a)


def test_unsupported_models_are_refused_by_the_cache_and_sampled_with_their_forward():
    # LayerNorm, learned absolute positions, plain GELU MLP: not what the cache reproduces
    gpt = dataclasses.replace(PRESETS["tiny"], seed=3).for_task(d_vocab=60, n_ctx=40)
    model = perturbed(build_model(gpt))
    assert not CachedDecoder.supports(model)
    with pytest.raises(ConfigError, match="LLaMA-style"):
        CachedDecoder(model)
    prompts = [[1, 5, 9], [1, 4], [1, 7, 7]]
    greedy = sample_tokens(model, prompts, max_new_tokens=8, generator=torch_generator(0), temperature=0)
    assert greedy == [greedy_uncached(model, p, 8) for p in prompts]


def test_sampling_arguments_are_checked(llama):
    with pytest.raises(ConfigError, match="max_new_tokens"):
        sample_tokens(llama, [[1]], max_new_tokens=0, generator=torch_generator(0))
    with pytest.raises(ConfigError, match="temperature"):
        sample_tokens(llama, [[1]], max_new_tokens=1, generator=torch_generator(0), temperature=-1)
