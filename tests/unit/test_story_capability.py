"""feature_capability: a TinyStories feature as audit data, on a tiny untrained story checkpoint (no accuracy is
asserted: the model only has to run)."""

import dataclasses

import pytest
import torch

from interp.config import to_dict
from interp.errors import DataError
from interp.evaluation import answer_logits
from interp.models import PRESETS, build_model
from procedural_tasks import story_data
from procedural_tasks.story_capability import feature_capability
from procedural_tasks.story_checkpoints import StoryCheckpoint, load_story_checkpoint, save_story_checkpoint
from procedural_tasks.story_data import StoryDataConfig, build_story_splits, build_story_tokenizer
from procedural_tasks.story_features import (
    _CONFLICT,
    _HINT,
    _MORAL,
    _SAD_ENDING,
    _TWIST_OPENER,
    sentences,
)
from procedural_tasks.story_generator import StoryGeneratorConfig, generate_stories
from procedural_tasks.story_records import FEATURES

DATA = StoryDataConfig(n_stories=800, n_ctx=256, vocab_size=512)


def marker_start(feature: str, story: str) -> int:
    """Where the feature's planted form begins, read off the story with story_features' rules."""
    if feature == "dialogue":
        return story.index('"')
    if feature == "badending":
        last = sentences(story)[-1]
        assert _SAD_ENDING.fullmatch(last)
        return story.rindex(last)
    pattern = {"twist": _TWIST_OPENER, "foreshadowing": _HINT, "moralvalue": _MORAL, "conflict": _CONFLICT}
    return pattern[feature].search(story).start()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> StoryCheckpoint:
    tokenizer = build_story_tokenizer(DATA)
    model_config = dataclasses.replace(
        PRESETS["llama_cpu"], d_model=16, n_layers=2, n_heads=2, d_mlp=24
    ).for_task(d_vocab=tokenizer.vocab_size, n_ctx=DATA.n_ctx)
    out = tmp_path_factory.mktemp("story") / "pt"
    save_story_checkpoint(out, build_model(model_config), model_config, tokenizer, {"data": to_dict(DATA)})
    return load_story_checkpoint(out)


@pytest.mark.parametrize("feature", FEATURES)
def test_answer_is_the_first_token_of_the_feature_marker(checkpoint, feature):
    capability = feature_capability(checkpoint, feature, n_eval=64, seed=0)
    tok = checkpoint.tokenizer
    test = build_story_splits(DATA, tok).test
    stories = [r.story for r in test if feature in r.features]
    for batch in (capability.eval_set.batch, capability.train):
        for i in range(len(batch)):
            pos, answer = int(batch.answer_pos[i]), int(batch.answers[i])
            row = batch.tokens[i].tolist()
            assert row[0] == tok.bos_id and row[pos + 1] == answer
            assert all(t == tok.pad_id for t in row[pos + 2 :])
            prefix = tok.decode(row[: pos + 1])
            features_line = next(line for line in prefix.splitlines() if line.startswith("Features:"))
            assert feature.capitalize() in features_line
            start = prefix.index("Story:") + len("Story:")
            before, upto = prefix[start:], (prefix + tok.decode([answer]))[start:]
            [story] = {s for s in stories if (" " + s).startswith(upto)}
            at = marker_start(feature, story) + 1  # +1: the space after "Story:"
            assert len(before) <= at < len(upto) and not upto[len(before) : at].strip()
    assert capability.name == capability.eval_set.name == f"writes_{feature}"
    assert capability.probe_label is None


def test_eval_and_train_are_disjoint_and_share_out_the_feature_stories(checkpoint):
    n_twist = sum("twist" in r.features for r in build_story_splits(DATA, checkpoint.tokenizer).test)
    capability = feature_capability(checkpoint, "twist", n_eval=6, seed=1)
    batches = (capability.eval_set.batch, capability.train)
    rows = [
        {(*b.tokens[i, : int(b.answer_pos[i]) + 1].tolist(), int(b.answers[i])) for i in range(len(b))}
        for b in batches
    ]
    assert not rows[0] & rows[1]
    assert len(batches[0]) == 6 and len(batches[0]) + len(batches[1]) == n_twist
    small = feature_capability(checkpoint, "twist", n_eval=1000, seed=1)
    assert len(small.eval_set.batch) == (n_twist + 1) // 2 and len(small.train) == n_twist // 2


def test_same_seed_same_batches_other_seed_different(checkpoint):
    a, b, c = (feature_capability(checkpoint, "dialogue", n_eval=8, seed=s) for s in (3, 3, 4))
    for x, y in ((a.eval_set.batch, b.eval_set.batch), (a.train, b.train)):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.answers, y.answers)
    assert not torch.equal(a.eval_set.batch.tokens, c.eval_set.batch.tokens)


def test_right_padding_does_not_change_the_answer_logits(checkpoint):
    batch = feature_capability(checkpoint, "twist", n_eval=4, seed=0).eval_set.batch
    model = checkpoint.model.eval()
    padded = answer_logits(model, batch)
    for i in range(len(batch)):
        pos = int(batch.answer_pos[i])
        alone = model(batch.tokens[i : i + 1, : pos + 1])[0, -1]
        assert torch.allclose(padded[i], alone, atol=1e-5)


def _one_line_error(checkpoint: StoryCheckpoint, feature: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as err:
        feature_capability(checkpoint, feature, n_eval=8, seed=0)
    assert "\n" not in str(err.value)


def test_unknown_feature_is_a_one_line_data_error(checkpoint):
    _one_line_error(checkpoint, "plot", "unknown; use one of twist, foreshadowing")


def test_corpus_without_the_feature_is_a_one_line_data_error(checkpoint, monkeypatch):
    stories = generate_stories(DATA.n_stories, StoryGeneratorConfig(p_twist=0.0, seed=DATA.seed))
    monkeypatch.setattr(story_data, "load_story_corpus", lambda config: stories)
    _one_line_error(checkpoint, "twist", "has 0 stories with 'twist'")


def test_story_labelled_with_a_feature_it_lacks_is_a_one_line_data_error(checkpoint, monkeypatch):
    stories = generate_stories(DATA.n_stories, StoryGeneratorConfig(p_twist=0.0, seed=DATA.seed))
    mislabelled = [dataclasses.replace(r, features=("twist", *r.features)) for r in stories]
    monkeypatch.setattr(story_data, "load_story_corpus", lambda config: mislabelled)
    _one_line_error(checkpoint, "twist", "has no twist marker")
