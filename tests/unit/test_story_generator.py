"""Synthetic stories and their judges: the story generator, the feature classifiers and the story tokenizer.

No test touches the network: the ``no_network`` fixture makes every socket connection fail.
"""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interp.errors import ConfigError, DataError
from procedural_tasks.story_deletion import DeletionConfig
from procedural_tasks.story_features import (
    has_bad_ending,
    has_conflict,
    has_dialogue,
    has_foreshadowing,
    has_moral_value,
    has_twist,
    planted_feature_accuracy,
    quotations,
    sentences,
    synthetic_features,
)
from procedural_tasks.story_generator import (
    CORRUPTION_KINDS,
    StoryGeneratorConfig,
    corrupt_story,
    generate_stories,
)
from procedural_tasks.story_instruct import format_instruct_texts
from procedural_tasks.story_records import FEATURES
from procedural_tasks.story_tokenizer import StoryTokenizer, StoryTokenizerConfig, train_tokenizer

pytestmark = pytest.mark.usefixtures("no_network")


# ---------------------------------------------------------------- classifier


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Tom said, "Hi!"', True),
        ("Lily said, “Let’s go!”", True),
        ('“Let’s get the turkey!" said Jack.', True),  # mixed curly and straight, as in the sample
        ("«Bonjour», dit-il.", True),
        ('He read a sign that said "Stop".', True),  # a quotation, even if not speech
        ("Lily's dog didn't bark.", False),  # apostrophes
        ("She said 'hi' to the dog.", False),  # single quotes are not counted
        ("Tom said hello and waved.", False),
        ('He said "', False),  # unpaired
        ('Tom said "" and left.', False),  # an empty quotation
        ('The door said "123".', False),  # no letter inside
        ('"Hi', False),  # cut off inside speech
        ("", False),
    ],
)
def test_has_dialogue(text, expected):
    assert has_dialogue(text) is expected


def test_quotations_pair_marks_in_order():
    assert quotations('"Hi," said Tom. "Bye!"') == ["Hi,", "Bye!"]


def test_synthetic_rules_on_hand_written_examples():
    assert has_twist("Tom ran. But then, out of nowhere, a frog jumped out of the toy car! The end.")
    assert not has_twist("Suddenly, it started to rain, so they ran under a tree.")
    assert not has_twist("But then, something unexpected happened: the ball began to talk")  # no "!"
    hint, payoff = (
        "Mia did not know yet how important the rope would be.",
        "Then Mia remembered the rope, and it saved the day.",
    )
    assert has_foreshadowing(f"{hint} Mia played. {payoff}")
    assert not has_foreshadowing(f"{payoff} {hint}")
    assert not has_foreshadowing(hint + " Then Mia remembered the key, and it saved the day.")
    assert has_bad_ending("Tom played. Tom never saw his kite again.")
    assert not has_bad_ending("Tom never saw his kite again. Then he found it.")
    assert not has_bad_ending(
        "Tom felt sad for a moment, but then he smiled. In the end, Tom was very happy."
    )
    assert has_moral_value("Ann played. The moral of the story is that sharing is caring. The end.")
    assert not has_moral_value("They learned a new song at the park.")
    assert has_conflict("Ben took Lily's ball, and they had a big fight.")
    assert not has_conflict("Ben wanted to see the ball too.")


def test_generator_is_deterministic_and_seeded():
    config = StoryGeneratorConfig(seed=7)
    assert generate_stories(50, config) == generate_stories(50, config)
    assert generate_stories(50, config) != generate_stories(50, StoryGeneratorConfig(seed=8))
    assert generate_stories(0) == []


def test_generator_labels_agree_with_the_classifier_on_held_out_stories():
    records = generate_stories(1500, StoryGeneratorConfig(seed=12345))
    assert all(set(synthetic_features(r.story)) == set(r.features) for r in records)
    counts = {f: sum(f in r.features for r in records) for f in FEATURES}
    for f, p in StoryGeneratorConfig().feature_probs.items():
        sd = math.sqrt(len(records) * p * (1 - p))
        assert abs(counts[f] - len(records) * p) < 5 * sd, f
    assert all(r.source == "synthetic" and r.known_features == FEATURES for r in records)
    assert all(len(r.words) >= 2 and r.summary for r in records)
    assert all(not any(c in r.story for c in '"“”') for r in records if "dialogue" not in r.features)
    assert any("'" in r.story for r in records if "dialogue" not in r.features)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), p=st.floats(0.0, 1.0))
def test_generator_ground_truth_holds_for_any_seed_and_probability(seed, p):
    config = StoryGeneratorConfig(**{f"p_{f}": p for f in FEATURES}, seed=seed)
    for r in generate_stories(40, config):
        assert synthetic_features(r.story) == r.features


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_generated_stories_have_three_to_eight_sentences(p):
    config = StoryGeneratorConfig(
        **{f"p_{f}": p for f in FEATURES if f != "dialogue"}, p_dialogue=0.0, seed=3
    )
    lengths = {len(sentences(r.story)) for r in generate_stories(300, config)}
    assert min(lengths) >= 3 and max(lengths) <= 8


def test_corrupted_generations_lose_recall_but_not_precision():
    records = generate_stories(400, StoryGeneratorConfig(seed=99))
    rng = np.random.default_rng(0)
    for kind in CORRUPTION_KINDS:
        texts = [corrupt_story(r.story, kind=kind, rng=rng) for r in records]
        scores = planted_feature_accuracy(records, texts)
        for f, s in scores.items():
            assert math.isnan(s["precision"]) or s["precision"] == 1.0, (kind, f)
        assert min(s["accuracy"] for s in scores.values()) < 1.0 or kind == "drop_sentence"


def test_generator_config_validates():
    with pytest.raises(ConfigError, match="p_twist 1.2"):
        StoryGeneratorConfig(p_twist=1.2)
    with pytest.raises(ConfigError, match="max_sentences"):
        StoryGeneratorConfig(min_sentences=5, max_sentences=4)


# ---------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> StoryTokenizer:
    texts = format_instruct_texts(generate_stories(300, StoryGeneratorConfig(seed=5)))
    return train_tokenizer(texts, config=StoryTokenizerConfig(vocab_size=300))


def test_tokenizer_round_trips_any_text(tokenizer):
    text = "Features: Twist\nStory: Lily said, “I’m happy!” ñ 123  \n"
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.bos_id and tokenizer.eos_id not in ids
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode("a", bos=False, eos=True)[-1] == tokenizer.eos_id
    assert tokenizer.encode_batch([text, "b"]) == [ids, tokenizer.encode("b")]
    assert tokenizer.vocab_size == 300
    with pytest.raises(DataError, match="outside the vocabulary"):
        tokenizer.decode([300])


def test_tokenizer_training_is_deterministic_and_saves_as_json(tokenizer, tmp_path):
    texts = format_instruct_texts(generate_stories(300, StoryGeneratorConfig(seed=5)))
    again = train_tokenizer(texts, config=StoryTokenizerConfig(vocab_size=300))
    assert again.tokenizer.to_str() == tokenizer.tokenizer.to_str()
    path = tmp_path / "tok" / "tokenizer.json"
    tokenizer.save(path)
    assert json.loads(path.read_text())["model"]["type"] == "BPE"
    assert StoryTokenizer.load(path).encode(texts[0]) == tokenizer.encode(texts[0])
    assert list(path.parent.iterdir()) == [path]
    with pytest.raises(DataError, match="does not exist"):
        StoryTokenizer.load(tmp_path / "missing.json")


def test_tokenizer_config_and_corpus_are_checked():
    with pytest.raises(ConfigError, match="vocab_size 100"):
        StoryTokenizerConfig(vocab_size=100)
    with pytest.raises(DataError, match="empty"):
        train_tokenizer(["", "  "])


def test_corrupt_story_rejects_unknown_kinds():
    with pytest.raises(ConfigError, match="not a corruption"):
        corrupt_story("A. B.", kind="shuffle", rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    "config",
    [
        DeletionConfig(kind="refusal", p=0.5),
        StoryGeneratorConfig(p_twist=0.1, seed=3),
        StoryTokenizerConfig(vocab_size=512),
    ],
)
def test_configs_round_trip_through_json(config):
    interp_config = pytest.importorskip("interp.config")
    assert interp_config.from_json(type(config), interp_config.to_json(config)) == config
