"""TinyStories protocols: story batches, generation scores, probe data, stages end to end and the hub loader's
offline error. Tiny sizes; no network."""

import dataclasses
import json
import pickle
import time

import numpy as np
import pytest
import torch

from interp import hooks
from interp.activations import collect_activations
from interp.errors import ConfigError, DataError, OfflineError
from interp.models import PRESETS, build_model
from interp.stats import wilson_ci
from interp.training import TrainConfig
from procedural_tasks.story_batches import encode_stories, story_batch, story_batch_fn, story_loss
from procedural_tasks.story_checkpoints import load_hub_story_model, load_story_checkpoint
from procedural_tasks.story_data import StoryDataConfig, build_story_splits, build_story_tokenizer, cut_story
from procedural_tasks.story_deletion import DeletionConfig
from procedural_tasks.story_features import has_dialogue, has_twist, has_twist_opener
from procedural_tasks.story_generator import StoryGeneratorConfig, corrupt_story, generate_stories
from procedural_tasks.story_probes import feature_probes, probe_batch, study_probe_config
from procedural_tasks.story_records import StoryRecord
from procedural_tasks.story_scoring import feature_judges, feature_prompts, generation_score
from procedural_tasks.story_stages import (
    StoryDeletionConfig,
    StoryPretrainConfig,
    StoryRecoveryConfig,
    run_story_deletion,
    run_story_pretrain,
    run_story_recovery,
)
from procedural_tasks.story_tokenizer import StoryTokenizerConfig, train_tokenizer

TINY_DATA = StoryDataConfig(n_stories=200, n_ctx=256, vocab_size=512)


def tiny_llama(d_vocab: int = 60, n_ctx: int = 40, seed: int = 0):
    cfg = dataclasses.replace(PRESETS["llama_cpu"], d_model=16, n_layers=2, n_heads=2, d_mlp=24, seed=seed)
    return cfg.for_task(d_vocab=d_vocab, n_ctx=n_ctx)


@pytest.fixture(scope="module")
def tokenizer():
    return build_story_tokenizer(TINY_DATA)


# --- batches -----------------------------------------------------------------------------------------------------


def test_story_batch_pads_right_and_masks_real_next_tokens():
    batch = story_batch([[1, 5, 6, 2], [1, 7, 2]])
    assert batch.tokens.tolist() == [[1, 5, 6, 2], [1, 7, 2, 0]]
    # loss_mask[i, t]: token t + 1 is real, so the last real token and the padding never predict anything
    assert batch.loss_mask.tolist() == [[True, True, True, False], [True, True, False, False]]
    assert batch.answers.tolist() == [2, 2] and batch.answer_pos.tolist() == [2, 1]


def test_story_batch_with_story_start_masks_the_prompt():
    batch = story_batch([[1, 9, 9, 5, 6, 2]], story_start=[3])
    # predictions of tokens 3.. (the story and EOS) count; the prompt's own tokens do not
    assert batch.loss_mask.tolist() == [[False, False, True, True, True, False]]


def test_encoded_stories_start_with_bos_end_with_eos_and_mark_the_story(tokenizer):
    splits = build_story_splits(TINY_DATA, tokenizer)
    stories = encode_stories(tokenizer, splits.test[:5], TINY_DATA, salt=3)
    for row, start in zip(stories.rows, stories.story_start, strict=True):
        assert row[0] == tokenizer.bos_id and row[-1] == tokenizer.eos_id
        assert tokenizer.decode(row[:start]).endswith("Story:")
        assert not tokenizer.decode(row[start:]).startswith("Story")


def test_story_batch_fn_is_a_pure_function_of_the_step(tokenizer):
    splits = build_story_splits(TINY_DATA, tokenizer)
    stories = encode_stories(tokenizer, splits.pretrain, TINY_DATA, salt=1)
    fn = story_batch_fn(stories, 4, seed=3)
    assert torch.equal(fn(5).tokens, fn(5).tokens)
    assert not torch.equal(fn(5).tokens, fn(6).tokens)
    assert (fn(0).tokens[:, 0] == tokenizer.bos_id).all()
    assert pickle.dumps(fn)  # data workers receive the batcher pickled


def test_cut_story_keeps_whole_sentences():
    text = "One day Tom ran. He saw a dog! The dog was big. They played."
    assert cut_story(text, 30) == "One day Tom ran. He saw a dog!"
    assert cut_story(text, 500) == text


# --- sampling and scores ------------------------------------------------------------------------------------------


class ScriptModel(torch.nn.Module):
    """A stub language model: after a prompt of ``prompt_len`` tokens it writes ``script`` then EOS."""

    def __init__(self, script: list[int], prompt_len: int, d_vocab: int, eos_id: int) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.script, self.prompt_len, self.d_vocab, self.eos_id = script, prompt_len, d_vocab, eos_id

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*tokens.shape, self.d_vocab), -30.0)
        for t in range(tokens.shape[1]):
            i = t + 1 - self.prompt_len
            target = self.script[i] if 0 <= i < len(self.script) else self.eos_id
            logits[:, t, target] = 30.0
        return logits


def test_generation_score_on_a_stub_model_is_a_proportion_with_a_wilson_ci(tokenizer):
    prompt = "Features: Dialogue\nStory:"
    script = tokenizer.encode(' Tom said, "Hi!" Then he left.', bos=False)
    model = ScriptModel(script, len(tokenizer.encode(prompt)), tokenizer.vocab_size, tokenizer.eos_id)
    score = generation_score(
        model,
        tokenizer,
        [prompt] * 10,
        feature="dialogue",
        judges={"exact": has_dialogue, "never": lambda text: False},
        max_new_tokens=40,
        seed=0,
    )
    assert score.texts[0] == 'Tom said, "Hi!" Then he left.'
    assert score.ended == 1.0
    exact, never = score.judges["exact"], score.judges["never"]
    assert (exact.k, exact.n, exact.rate) == (10, 10, 1.0)
    assert (exact.ci_low, exact.ci_high) == pytest.approx(wilson_ci(10, 10))
    assert exact.ci_low < 1.0 and (never.k, never.rate) == (0, 0.0) and never.ci_low == pytest.approx(0.0)
    assert json.loads(json.dumps(score.to_json()))["judges"]["exact"]["k"] == 10


def test_feature_prompts_ask_for_the_feature_on_stories_without_it():
    data = StoryDataConfig(n_stories=100)
    records = generate_stories(100, StoryGeneratorConfig(seed=1))
    prompts = feature_prompts(records, data, 30)
    assert len(prompts) == 30
    for prompt in prompts:
        assert prompt.endswith("Story:") and "Twist" in prompt.split("Features:")[1].split("\n")[0]


def test_judges_by_setting():
    assert set(feature_judges("synthetic", "twist")) == {"strict", "loose"}
    assert set(feature_judges("shared", "dialogue")) == {"exact"}
    with pytest.raises(ConfigError):
        feature_judges("shared", "twist")


def test_loose_twist_rule_keeps_precision_and_gains_recall_on_corrupted_stories():
    records = generate_stories(400, StoryGeneratorConfig(seed=2024))
    rng = np.random.default_rng(7)
    truth = np.array(["twist" in r.features for r in records])
    clean = np.array([has_twist_opener(r.story) for r in records])
    assert (clean == truth).all()
    noisy = [corrupt_story(r.story, kind="word_noise", rng=rng) for r in records]
    loose = np.array([has_twist_opener(t) for t in noisy])
    strict = np.array([has_twist(t) for t in noisy])
    assert not (loose & ~truth).any()
    assert loose.sum() >= strict.sum()


# --- probes -----------------------------------------------------------------------------------------------------


def test_probe_batch_left_fills_and_mean_last_10_has_one_vector_per_story(tokenizer):
    records = [
        StoryRecord(
            story='Tom said, "Hi there, friend!" They played in the park all day long.',
            features=("dialogue",),
        ),
        StoryRecord(story="Lily ran to the big tree and sat down under it.", features=()),
        StoryRecord(story="Sam had a red ball. He threw it high up in the sky.", features=()),
    ]
    batch = probe_batch(tokenizer, records, ("dialogue", "twist"), n_ctx=64)
    width = max(len(tokenizer.encode(r.story)) for r in records)
    assert batch.tokens.shape == (3, width)
    for i, record in enumerate(records):
        own = tokenizer.encode(record.story)
        assert batch.tokens[i, width - len(own) :].tolist() == own  # <bos> story, ending at the last position
    assert batch.labels["features"].tolist() == [[1, 0], [0, 0], [0, 0]]
    model = build_model(tiny_llama(d_vocab=tokenizer.vocab_size, n_ctx=64))
    acts = collect_activations(model, batch, hook_names=hooks.residual_stream(2), position="mean_last_10")
    assert all(acts[name].shape == (3, 16) for name in hooks.residual_stream(2))
    direct = model.run_with_cache(batch.tokens)[1][hooks.resid_post(1)][:, -10:].mean(1)
    assert torch.allclose(acts[hooks.resid_post(1)], direct, atol=1e-5)


@pytest.mark.filterwarnings("ignore:probe for")
def test_feature_probes_give_per_feature_accuracy_per_block(tokenizer):
    records = generate_stories(40, StoryGeneratorConfig(seed=3))
    batch = probe_batch(tokenizer, records, ("twist", "dialogue"), n_ctx=160)
    model = build_model(tiny_llama(d_vocab=tokenizer.vocab_size, n_ctx=160))
    result = feature_probes(
        model, batch, config=dataclasses.replace(study_probe_config(steps=5), test_frac=0.5)
    )
    layers = result.to_json()["layers"]
    assert [row["hook"] for row in layers] == hooks.residual_stream(2)
    assert all(len(row["feature_accuracy"]) == 2 and row["n_test"] == 20 for row in layers)


# --- stages end to end ------------------------------------------------------------------------------------------


def test_pretrain_delete_recover_end_to_end_changes_weights(tmp_path, tokenizer):
    def train(steps: int, lr: float, **kw) -> TrainConfig:
        return TrainConfig(
            steps=steps, batch_size=4, lr=lr, eval_every=steps, loss="sequence", device="cpu", **kw
        )

    model = dataclasses.replace(tiny_llama(), d_vocab=None, n_ctx=None)
    pretrain = StoryPretrainConfig(data=TINY_DATA, model=model, train=train(3, 1e-2), eval_n=4)
    run_story_pretrain(pretrain, tmp_path / "pt", tokenizer=tokenizer)
    base = load_story_checkpoint(tmp_path / "pt")
    assert (tmp_path / "pt" / "tokenizer.json").is_file() and base.metadata["tokenizer"] == "tokenizer.json"
    assert base.tokenizer.encode("Story: Tom") == tokenizer.encode("Story: Tom") and base.data == TINY_DATA

    deletion = StoryDeletionConfig(
        deletion=DeletionConfig(kind="filter", feature="twist"),
        train=train(2, 1e-2, schedule="constant"),
        eval_n=4,
    )
    summary = run_story_deletion(deletion, tmp_path / "pt", tmp_path / "del")
    assert summary["dataset"] == "filter-Twist"
    deleted = load_story_checkpoint(tmp_path / "del")
    changed = [
        not torch.equal(a, b)
        for a, b in zip(base.model.parameters(), deleted.model.parameters(), strict=True)
    ]
    assert any(changed)

    recovery = StoryRecoveryConfig(
        train=train(2, 1e-2, schedule="constant", eval_steps=(1, 2)),
        score_steps=(0, 2),
        n_generations=3,
        max_new_tokens=6,
        eval_n=4,
    )
    result = run_story_recovery(recovery, tmp_path / "del", tmp_path / "rec")
    assert set(result["scores"]) == {"0", "2"}
    for score in result["scores"].values():
        counts = score["judges"]["strict"]
        assert counts["n"] == 3 and 0 <= counts["ci_low"] <= counts["rate"] <= counts["ci_high"] <= 1
    assert [p["step"] for p in result["loss_curve"]] == [0, 1, 2]
    recovered = load_story_checkpoint(tmp_path / "rec")
    assert any(
        not torch.equal(a, b)
        for a, b in zip(deleted.model.parameters(), recovered.model.parameters(), strict=True)
    )
    splits = build_story_splits(TINY_DATA, tokenizer)
    stories = encode_stories(tokenizer, splits.test[:3], TINY_DATA, salt=4)
    assert np.isfinite(story_loss(recovered.model, stories))


def test_deletion_config_refuses_recovery_kind():
    with pytest.raises(ConfigError):
        StoryDeletionConfig(deletion=DeletionConfig(kind="recovery"), train=TrainConfig(steps=1))


def test_data_config_validation():
    with pytest.raises(ConfigError, match="dialogue"):
        StoryDataConfig(setting="shared", feature="twist")
    with pytest.raises(ConfigError):
        StoryDataConfig(fields=("words",))
    with pytest.raises(ConfigError):
        StoryDataConfig(split=(0.5, 0.2, 0.2))


def test_tokenizer_vocab_bound_is_checked_when_loading(tmp_path, tokenizer):
    small = train_tokenizer(["a b c"], config=StoryTokenizerConfig(vocab_size=260))
    assert small.vocab_size < tokenizer.vocab_size
    with pytest.raises(DataError):
        build_story_splits(dataclasses.replace(TINY_DATA, n_ctx=16), tokenizer)


# --- hub loader ---------------------------------------------------------------------------------------------------


def test_hub_model_loader_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    t0 = time.time()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        load_hub_story_model("roneneldan/TinyStories-1M")
    assert time.time() - t0 < 5
