"""Diffs measure known planted changes; patching identities hold exactly."""

import copy

import pytest
import torch

from interp import hooks
from interp.batches import Batch
from interp.diffing import attention_diff, effective_rank, key_mask, kl_by_position, weight_diff
from interp.errors import ConfigError
from interp.models import build_model
from interp.patching import answer_accuracy, answer_logprob, patch_across_models, patched_logits
from tests.conftest import tiny_model_config


@pytest.fixture(scope="module")
def base():
    return build_model(tiny_model_config())


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (24, 12), generator=gen)
    return Batch(
        tokens=tokens, answer_pos=torch.full((24,), 10), answers=torch.randint(0, 64, (24,), generator=gen)
    )


def perturbed(model, scale=0.3, prefix="blocks", seed=0):
    """A copy whose weights under ``prefix`` get Gaussian noise (embeddings and unembedding kept)."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in out.state_dict().items():
            if key.startswith(prefix):
                value.add_(scale * torch.randn(value.shape, generator=gen))
    return out


def test_weight_diff_of_a_planted_rank_one_change(base):
    finetuned = copy.deepcopy(base)
    u, v = torch.randn(16), torch.randn(16)
    with torch.no_grad():
        finetuned.state_dict()["blocks.1.attn.v.weight"].add_(torch.outer(u, v))
    result = weight_diff(base, finetuned)
    changed = [m for m in result.matrices if m.norm > 0]
    assert [m.name for m in changed] == ["blocks.1.attn.v.weight"]
    m = changed[0]
    assert m.norm == pytest.approx(float(u.norm() * v.norm()), rel=1e-5)
    assert m.relative == pytest.approx(m.norm / m.base_norm)
    assert m.effective_rank == pytest.approx(1.0, abs=1e-3)
    assert m.top_sv_share == pytest.approx(1.0, abs=1e-6)
    untouched = next(x for x in result.matrices if x.name == "blocks.0.attn.q.weight")
    assert untouched.effective_rank == 0.0 and untouched.top_sv_share is None
    assert result.to_json()["matrices"][0]["shape"] == list(result.matrices[0].shape)


def test_effective_rank_of_identity_is_its_size():
    assert effective_rank(torch.eye(7)) == pytest.approx(7.0)
    assert effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0]))) == pytest.approx(2.0)


def test_kl_is_zero_for_identical_models_and_confined_to_changed_positions(base, batch):
    same = kl_by_position(base, copy.deepcopy(base), batch)
    assert max(same.per_position) == pytest.approx(0.0, abs=1e-9)
    other = kl_by_position(base, perturbed(base), batch)
    assert len(other.per_position) == 12 and min(other.per_position) > 0
    assert other.mean == pytest.approx(sum(other.per_position) / 12)
    assert other.answer == pytest.approx(other.per_position[10])


def test_attention_diff_masses(base, batch):
    everything = torch.ones_like(batch.tokens, dtype=torch.bool)
    first = torch.zeros_like(everything)
    first[:, 0] = True
    result = attention_diff(base, perturbed(base), batch, key_groups={"all": everything, "first": first})
    for model in ("base", "finetuned"):
        for layer in result.mass[model]["all"]:
            assert layer == pytest.approx([1.0, 1.0], abs=1e-5)  # causal softmax rows sum to 1
    _, cache = base.run_with_cache(batch.tokens, names_filter=[hooks.attn_pattern(1)])
    expected = cache[hooks.attn_pattern(1)][:, :, 10, 0].mean(0)
    assert result.mass["base"]["first"][1] == pytest.approx(expected.tolist(), abs=1e-6)
    assert result.difference("all")[0] == pytest.approx([0.0, 0.0], abs=1e-5)
    mask = key_mask(batch.tokens, [3, 5])
    assert torch.equal(mask, (batch.tokens == 3) | (batch.tokens == 5))


def test_diffs_refuse_different_architectures(base, batch):
    other = build_model(tiny_model_config(d_mlp=48))
    with pytest.raises(ConfigError):
        weight_diff(base, other)
    with pytest.raises(ConfigError):
        patch_across_models(base, other, batch, hook_names=[hooks.resid_post(0)])


NAMES = [hooks.resid_post(0), hooks.attn_out(1), hooks.mlp_post(0), hooks.attn_pattern(1)]


def test_patching_identical_models_changes_nothing(base, batch):
    twin = copy.deepcopy(base)
    result = patch_across_models(twin, base, batch, hook_names=NAMES, metric=answer_logprob, batch_size=10)
    for value in result.patched.values():
        assert value == pytest.approx(result.target, abs=1e-6)
    assert result.source == pytest.approx(result.target, abs=1e-6)
    assert all(v is None for v in result.restored().values())


def test_patching_a_model_into_itself_reproduces_its_logits(base, batch):
    with torch.no_grad():
        expected = base(batch.tokens)
    unhooked_attention = [name for name in NAMES if name != hooks.attn_pattern(1)]
    assert torch.equal(patched_logits(base, base, batch, hook_names=unhooked_attention), expected)
    # a hooked pattern runs the explicit attention instead of SDPA (interp.fused_kernels): the same to rounding
    torch.testing.assert_close(
        patched_logits(base, base, batch, hook_names=NAMES), expected, rtol=0, atol=1e-5
    )


def test_patching_last_resid_post_reproduces_the_source(base, batch):
    finetuned = perturbed(base)  # blocks differ; final norm and unembedding shared
    with torch.no_grad():
        source_logits, target_logits = finetuned(batch.tokens), base(batch.tokens)
    assert not torch.allclose(source_logits, target_logits, atol=1e-2)
    last = hooks.resid_post(base.cfg.n_layers - 1)
    torch.testing.assert_close(
        patched_logits(finetuned, base, batch, hook_names=[last]), source_logits, rtol=0, atol=1e-5
    )
    result = patch_across_models(
        finetuned, base, batch, hook_names=[hooks.resid_post(0), last], metric=answer_logprob
    )
    assert result.patched[last] == pytest.approx(result.source, abs=1e-5)
    assert result.restored()[last] == pytest.approx(1.0, abs=1e-4)


def test_position_restricted_patching_changes_only_those_positions(base, batch):
    finetuned = perturbed(base)
    with torch.no_grad():
        source_logits, target_logits = finetuned(batch.tokens), base(batch.tokens)
    last = hooks.resid_post(1)
    at_answer = patched_logits(finetuned, base, batch, hook_names=[last], positions="answer")
    torch.testing.assert_close(at_answer[:, 10], source_logits[:, 10], rtol=0, atol=1e-5)
    torch.testing.assert_close(at_answer[:, :10], target_logits[:, :10], rtol=0, atol=1e-6)
    mask = torch.zeros_like(batch.tokens, dtype=torch.bool)
    mask[:, 4] = True
    masked = patched_logits(finetuned, base, batch, hook_names=[last], positions=mask)
    torch.testing.assert_close(masked[:, 4], source_logits[:, 4], rtol=0, atol=1e-5)
    torch.testing.assert_close(masked[:, 5], target_logits[:, 5], rtol=0, atol=1e-6)
    # an early-layer patch at position 4 reaches later positions but not earlier ones
    early = patched_logits(finetuned, base, batch, hook_names=[hooks.resid_post(0)], positions=4)
    torch.testing.assert_close(early[:, :4], target_logits[:, :4], rtol=0, atol=1e-6)
    assert not torch.allclose(early[:, 6], target_logits[:, 6], atol=1e-4)


def test_accuracy_metric_and_both_directions(base, batch):
    finetuned = perturbed(base)
    with torch.no_grad():
        answers = finetuned(batch.tokens)[:, 10].argmax(-1)
    labelled = Batch(tokens=batch.tokens, answer_pos=batch.answer_pos, answers=answers)
    forward = patch_across_models(
        finetuned, base, labelled, hook_names=[hooks.resid_post(1)], metric=answer_accuracy
    )
    backward = patch_across_models(
        base, finetuned, labelled, hook_names=[hooks.resid_post(1)], metric=answer_accuracy
    )
    assert forward.source == 1.0 and forward.patched[hooks.resid_post(1)] == 1.0
    assert backward.target == 1.0 and backward.source == forward.target
    assert forward.to_json()["metric"] == "answer_accuracy"
