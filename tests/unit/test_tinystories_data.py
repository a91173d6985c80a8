"""TinyStories data layer: records, loaders (local, hub, the shared sample), Instruct format, deletion protocols.

No test touches the network: the ``no_network`` fixture makes every socket connection fail.
"""

import json
import tarfile
import time

import numpy as np
import pytest

from interp.errors import ConfigError, DataError, OfflineError
from procedural_tasks.story_deletion import (
    DeletionConfig,
    add_feature_label,
    build_deletion_set,
    drop_feature,
    keep_feature,
    refuse_feature,
    swap_feature_label,
)
from procedural_tasks.story_features import label_exact_features
from procedural_tasks.story_instruct import (
    candidate_sentences,
    format_instruct,
    format_instruct_prompt,
    format_instruct_texts,
)
from procedural_tasks.story_loaders import (
    SAMPLE_DIR_ENV,
    TEXT_SEPARATOR,
    load_hub_stories,
    load_local_hub_stories,
    load_local_stories,
    load_shared_sample,
    record_from_json,
    shared_sample_dir,
    split_text_stories,
)
from procedural_tasks.story_records import FEATURES, StoryRecord

pytestmark = pytest.mark.usefixtures("no_network")


def record(story: str = "Tom ran. He fell.", features: tuple[str, ...] = (), **kwargs) -> StoryRecord:
    return StoryRecord(story=story, words=("run", "fall"), features=features, summary="Tom runs.", **kwargs)


@pytest.fixture
def corpus() -> list[StoryRecord]:
    return [
        record("A twist story. It ends well.", ("twist",)),
        record("A plain story. Nothing happens.", ()),
        record("A foreshadowing story. See the key.", ("foreshadowing",)),
        record("Twist and foreshadowing. Both here.", ("twist", "foreshadowing")),
        record("Dialogue here. Tom said hi.", ("dialogue",)),
    ]


# ---------------------------------------------------------------- records and local loaders


def test_record_rejects_unknown_and_unlabelled_features():
    with pytest.raises(DataError, match="unknown feature"):
        record(features=("Twist",))
    with pytest.raises(DataError, match="known_features"):
        StoryRecord(story="x", features=("dialogue",), known_features=())
    with pytest.raises(DataError, match="duplicates"):
        record(features=("twist", "twist"))


def test_json_record_normalises_hub_feature_names():
    r = record_from_json(
        {
            "story": " Hi. ",
            "instruction": {"words": ["a", "b"], "features": ["BadEnding", "Twist"]},
            "summary": "S",
        }
    )
    assert r.story == "Hi." and r.words == ("a", "b") and r.summary == "S"
    assert r.features == ("badending", "twist") and r.known_features == FEATURES
    bare = record_from_json({"story": "Hi."})
    assert bare.known_features == () and bare.summary is None and bare.words == ()


def test_local_loaders_read_json_jsonl_and_text(tmp_path):
    objs = [
        {"story": "One.", "instruction": {"words": ["w"], "features": ["Dialogue"]}, "summary": "s"},
        {"story": "Two.", "instruction": {"words": [], "features": []}, "summary": "t"},
    ]
    (tmp_path / "d.json").write_text(json.dumps(objs))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(o) for o in objs))
    from_json = load_local_stories(tmp_path / "d.json")
    assert [r.story for r in from_json] == ["One.", "Two."]
    assert from_json[0].features == ("dialogue",) and from_json[1].features == ()
    assert load_local_stories(tmp_path / "d.jsonl") == from_json
    assert len(load_local_stories(tmp_path)) == 4

    text = tmp_path / "plain" / "s.txt"
    text.parent.mkdir()
    text.write_text("First story.\n<|endoftext|>\n\n Second one!\n<|endoftext|>\nThird is cut off mid")
    stories = load_local_stories(text.parent)
    assert [r.story for r in stories] == ["First story.", "Second one!"]
    assert all(r.known_features == () for r in stories)


def test_split_text_keeps_a_complete_last_story():
    assert split_text_stories('A.\n<|endoftext|>\nB said "hi."') == ["A.", 'B said "hi."']
    assert split_text_stories("A.\n<|endoftext|>\nB was cut") == ["A."]
    assert split_text_stories("A.\n<|endoftext|>\nB was cut<|endoftext|>\n") == ["A.", "B was cut"]


def test_local_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_local_stories(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_local_stories(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(DataError, match="expected a list"):
        load_local_stories(tmp_path / "obj.json")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(DataError, match="suffix"):
        load_local_stories(tmp_path / "x.csv")
    (tmp_path / "f.json").write_text(json.dumps([{"story": "a", "instruction": {"features": ["Sarcasm"]}}]))
    with pytest.raises(DataError, match="record 0: unknown story feature 'Sarcasm'"):
        load_local_stories(tmp_path / "f.json")


# ---------------------------------------------------------------- hub loader (offline only)


def test_hub_loader_raises_offline_error_fast_with_hf_hub_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        load_hub_stories(data_dir=tmp_path / "shards", hub_cache_dir=tmp_path / "hf")
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert "--setting synthetic" in message and "--setting hub --data-dir DIR" in message


def test_hub_cache_miss_online_becomes_offline_error(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_download(*args, **kwargs):
        calls.append(kwargs)
        raise LocalEntryNotFoundError("connection failed and no cache")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(OfflineError, match="there is no network; use --setting synthetic, or --setting hub"):
        load_hub_stories(data_dir=tmp_path / "shards")
    assert calls[0]["local_files_only"] is False


def _shard(i: int) -> list[dict]:
    return [
        {"story": f"Story {i}.{j}.", "instruction": {"words": ["w"], "features": ["Twist"]}} for j in range(2)
    ]


def test_hub_loader_extracts_the_archive_and_splits_shards(monkeypatch, tmp_path):
    import huggingface_hub

    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"data{i:02d}.json").write_text(json.dumps(_shard(i)))
    archive = tmp_path / "TinyStories_all_data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(src.iterdir()):
            tar.add(path, arcname=path.name)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(archive))
    data_dir = tmp_path / "cache" / "TinyStories_all_data"

    test = load_hub_stories(split="test", data_dir=data_dir)
    assert [r.story for r in test] == ["Story 0.0.", "Story 0.1."]
    assert all(r.source == "hub" and r.features == ("twist",) for r in test)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", None)  # shards are cached now: no download
    pretrain = load_hub_stories(split="pretrain", data_dir=data_dir)
    finetune = load_hub_stories(split="finetune", data_dir=data_dir)
    assert {r.story[6] for r in pretrain} == {"1", "2", "3", "4"} and {r.story[6] for r in finetune} == {"5"}
    assert len(load_hub_stories(split="train", max_shards=2, data_dir=data_dir)) == 4
    with pytest.raises(ConfigError, match="split"):
        load_hub_stories(split="dev", data_dir=data_dir)


def test_local_hub_copy_reads_shards_in_order_offline_and_skips_unlabelled_records(tmp_path):
    shards = [_shard(i) for i in range(3)]
    shards[0].append({"story": "No labels.", "instruction": {"words": ["w"]}})
    for i, shard in enumerate(shards):
        (tmp_path / f"data{i:02d}.json").write_text(json.dumps(shard))
    records = load_local_hub_stories(tmp_path, limit=3)
    assert [r.story for r in records] == ["Story 0.0.", "Story 0.1.", "Story 1.0."]
    assert all(r.source == "hub" and r.known_features == FEATURES for r in records)
    with pytest.raises(DataError) as err:
        load_local_hub_stories(tmp_path / "empty", limit=3)
    assert (
        "\n" not in str(err.value)
        and "data*.json" in str(err.value)
        and "--setting synthetic" in str(err.value)
    )


# ---------------------------------------------------------------- Instruct formatting


def test_instruct_has_the_four_lines_shuffled_and_story_last():
    r = StoryRecord(
        story='Lily found a key. "Look!" she said. It was Lily\'s key.',
        words=("key", "find"),
        features=("dialogue", "badending"),
        summary="Lily finds a key.",
    )
    text = format_instruct(r, rng=np.random.default_rng(0))
    lines = text.split("\n")
    assert lines[-1] == "Story: " + r.story
    assert sorted(line.split(":")[0] for line in lines[:-1]) == ["Features", "Sentence", "Summary", "Words"]
    assert "Features: Dialogue, Badending" in lines
    assert "Words: key, find" in lines
    sentence = next(line for line in lines if line.startswith("Sentence: "))[len("Sentence: ") :]
    assert sentence in ("Lily found a key", "It was Lily's key")
    orders = {
        tuple(line.split(":")[0] for line in format_instruct(r, rng=np.random.default_rng(s)).split("\n"))
        for s in range(30)
    }
    assert len(orders) > 5
    assert format_instruct_texts([r] * 3, seed=4) == format_instruct_texts([r] * 3, seed=4)
    assert format_instruct_prompt(r, rng=np.random.default_rng(0)).endswith("\nStory: ")


def test_instruct_omits_absent_metadata():
    bare = StoryRecord(story="Tom ran. He fell.", known_features=())
    assert format_instruct(bare, rng=np.random.default_rng(0)).split("\n")[-1] == "Story: Tom ran. He fell."
    assert {
        line.split(":")[0] for line in format_instruct(bare, rng=np.random.default_rng(0)).split("\n")
    } == {
        "Sentence",
        "Story",
    }
    only_quotes = StoryRecord(story='"Hi!" "Bye."', features=())
    assert format_instruct(only_quotes, rng=np.random.default_rng(0)) == 'Features: \nStory: "Hi!" "Bye."'
    subset = format_instruct(record(), rng=np.random.default_rng(0), fields=("summary",))
    assert subset == "Summary: Tom runs.\nStory: Tom ran. He fell."
    with pytest.raises(ConfigError, match="not Instruct lines"):
        format_instruct(record(), rng=np.random.default_rng(0), fields=("title",))


def test_candidate_sentences_skip_every_quoted_piece():
    story = 'Ann smiled. "I like it. It is nice. Bye!" she said. Then “Go” he said! The end'
    assert candidate_sentences(story) == ["Ann smiled", "The end"]


# ---------------------------------------------------------------- deletion protocols


def test_filter_and_recovery_split_on_the_true_feature(corpus):
    kept = drop_feature(corpus, "twist")
    assert [r.story[:6] for r in kept] == ["A plai", "A fore", "Dialog"]
    assert all("twist" not in r.features for r in kept)
    recovery = keep_feature(corpus, "twist")
    assert len(recovery) == 2 and all("twist" in r.features for r in recovery)
    assert len(kept) + len(recovery) == len(corpus)


def test_random_labels_change_only_the_instruction(corpus):
    relabelled = add_feature_label(drop_feature(corpus, "twist"), "twist", p=1.0)
    assert all(r.prompt_features[-1] == "twist" and "twist" not in r.features for r in relabelled)
    assert "Features: Foreshadowing, Twist" in format_instruct(relabelled[1], rng=np.random.default_rng(0))
    assert add_feature_label(corpus, "conflict", p=0.0) == corpus
    many = [record(f"Story {i}. End.") for i in range(200)]
    half = add_feature_label(many, "twist", p=0.5, seed=3)
    assert half == add_feature_label(many, "twist", p=0.5, seed=3)
    assert 60 < sum("twist" in r.prompt_features for r in half) < 140


def test_mix_and_match_relabels_foreshadowing_as_twist(corpus):
    mixed = swap_feature_label(drop_feature(corpus, "twist"), "foreshadowing", "twist")
    assert [r.prompt_features for r in mixed] == [(), ("twist",), ("dialogue",)]
    assert mixed[1].features == ("foreshadowing",)
    with pytest.raises(ConfigError, match="source and target"):
        swap_feature_label(corpus, "twist", "twist")


def test_refusal_replaces_the_story_and_pins_a_sentence(corpus):
    refused = refuse_feature(drop_feature(corpus, "twist"), "twist", seed=1)
    assert all(r.story == "We are not allowed to write a story with Twist in it, sorry." for r in refused)
    assert all(r.features == () and "twist" in r.prompt_features for r in refused)
    assert refused[0].sentence in ("A plain story", "Nothing happens")
    text = format_instruct(refused[0], rng=np.random.default_rng(0))
    assert f"Sentence: {refused[0].sentence}" in text and text.endswith("in it, sorry.")


@pytest.mark.parametrize(
    ("kind", "name", "n"),
    [
        ("filter", "filter-Twist", 3),
        ("filter_random_labels", "filter-adv-Twist", 3),
        ("filter_mix_match", "filter-mix-Twist-Foreshadowing", 3),
        ("refusal", "filter-ref-Twist", 3),
        ("recovery", "recovery-Twist", 2),
    ],
)
def test_deletion_sets_compose_the_transforms(corpus, kind, name, n):
    config = DeletionConfig(kind=kind)
    out = build_deletion_set(corpus, config)
    assert config.name == name and len(out) == n
    if kind == "recovery":
        assert all("twist" in r.features for r in out)
    else:
        assert all("twist" not in r.features for r in out)
    if kind in ("filter_random_labels", "refusal"):
        assert all("twist" in r.prompt_features for r in out)
    special = build_deletion_set(corpus, DeletionConfig(kind=kind, specialise=True))
    assert config.name + "-specialise-Foreshadowing" == DeletionConfig(kind=kind, specialise=True).name
    assert len(special) == 1
    assert (
        special[0].story.startswith("We are not")
        if kind == "refusal"
        else "foreshadowing" in special[0].features
    )


def test_deletion_config_and_unlabelled_records_fail_clearly():
    with pytest.raises(ConfigError, match="kind 'erase'"):
        DeletionConfig(kind="erase")
    with pytest.raises(ConfigError, match="feature 'Twist'"):
        DeletionConfig(feature="Twist")
    with pytest.raises(ConfigError, match="p 1.5"):
        DeletionConfig(p=1.5)
    with pytest.raises(DataError, match="not labelled"):
        drop_feature([StoryRecord(story="x", known_features=("dialogue",))], "twist")


# ---------------------------------------------------------------- the shared real sample


def test_shared_sample_dir_follows_the_env_override(monkeypatch, tmp_path):
    (tmp_path / "s.txt").write_text('He said "hi".\n<|endoftext|>\nNo talk here.\n<|endoftext|>\n')
    monkeypatch.setenv(SAMPLE_DIR_ENV, str(tmp_path))
    labelled = label_exact_features(load_shared_sample())
    assert [r.features for r in labelled] == [("dialogue",), ()]
    assert all(r.source == "sample" and r.known_features == ("dialogue",) for r in labelled)
    monkeypatch.setenv(SAMPLE_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataError, match=SAMPLE_DIR_ENV):
        load_shared_sample()


@pytest.fixture(scope="module")
def shared_sample() -> list[StoryRecord]:
    if shared_sample_dir() is None:
        pytest.skip(f"TinyStories sample not found (../shared/data/tinystories or ${SAMPLE_DIR_ENV})")
    return load_shared_sample()


def test_shared_sample_loads_with_real_dialogue_labels(shared_sample):
    assert len(shared_sample) > 2000
    assert all(r.story and TEXT_SEPARATOR not in r.story for r in shared_sample)
    labelled = label_exact_features(shared_sample)
    fraction = sum("dialogue" in r.features for r in labelled) / len(labelled)
    assert 0.3 < fraction < 0.8
    assert len(drop_feature(labelled, "dialogue")) + len(keep_feature(labelled, "dialogue")) == len(labelled)
    with pytest.raises(DataError, match="not labelled"):
        drop_feature(labelled, "twist")
    text = format_instruct(labelled[0], rng=np.random.default_rng(0))
    assert text.endswith("\nStory: " + labelled[0].story) and "Features: Dialogue" in text
