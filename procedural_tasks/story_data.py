"""Story corpora of the TinyStories protocols (protocol §7): which stories, how they are split and tokenized.

Three settings share every function here:

- ``synthetic``: `story_generator` stories with planted features, judged exactly by their rules (offline default);
  template-generated, not TinyStories;
- ``shared``: the 2,316-story sample at ``../shared/data/tinystories``, where only dialogue is labelled (exactly, by
  `story_features.has_dialogue`). Its stories are cut at a sentence boundary to ``max_story_chars`` and labelled
  *after* the cut, so a label always describes the text the model sees;
- ``hub``: the study's data, a local copy of `TinyStories_all_data` (data*.json shards in ``data_dir``), labelled by
  the features its Instruct prompts asked for, as the study labels them. Stories are never cut (a cut could drop
  the labelled twist); the first ``n_stories`` labelled records are used.

A fixed data seed makes one corpus per setting; model seeds vary initialisation and batch order. The corpus is
split into pretraining, fine-tuning (deletion and recovery sets are built from it) and test parts (loss sets,
generation prompts, probe data). Texts are Instruct-formatted once per record (seeded line order), encoded as
``<bos> text <eos>`` and texts longer than ``n_ctx`` tokens are dropped. Unlike the study (no EOS) we append EOS so a
sampled story ends by itself and the judge sees whole stories.
"""

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from interp.errors import ConfigError, DataError
from interp.runtime import numpy_rng
from procedural_tasks.story_features import label_exact_features, sentences
from procedural_tasks.story_generator import StoryGeneratorConfig, generate_stories
from procedural_tasks.story_instruct import format_instruct
from procedural_tasks.story_loaders import load_local_hub_stories, load_shared_sample
from procedural_tasks.story_records import FEATURES, INSTRUCT_FIELDS, StoryRecord, check_feature
from procedural_tasks.story_tokenizer import StoryTokenizer, StoryTokenizerConfig, train_tokenizer

SETTINGS = ("synthetic", "shared", "hub")

Setting = Literal["synthetic", "shared", "hub"]


@dataclass(frozen=True, kw_only=True)
class StoryDataConfig:
    """Which corpus, how it is formatted, tokenized and split. One config gives one corpus (seeded)."""

    setting: Setting = (
        "synthetic"  # synthetic (planted features) | shared (the 2,316-story sample; dialogue only) | hub
    )
    data_dir: str | None = None  # hub: the folder of TinyStories_all_data data*.json shards
    feature: str = "twist"  # the feature to delete and recover (shared: only dialogue is labelled)
    n_stories: int = 6000  # synthetic: stories generated; hub: records read (shared: the whole sample)
    fields: tuple[str, ...] = ("words", "features")  # Instruct lines (the study uses all four)
    max_story_chars: int | None = 600  # shared: cut stories at a sentence boundary to this length; None: keep
    n_ctx: int = 160  # tokens per text at most (<bos> text <eos>); longer texts are dropped
    vocab_size: int = 1024  # tokenizer vocabulary bound
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)  # pretrain / finetune / test fractions of the corpus
    seed: int = 0  # corpus, split and formatting

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ConfigError(f"setting {self.setting!r} is unknown; use synthetic, shared or hub")
        if (self.setting == "hub") != (self.data_dir is not None):
            raise ConfigError("setting hub reads data_dir (--data-dir DIR) and no other setting does")
        check_feature(self.feature)
        if self.setting == "shared" and self.feature != "dialogue":
            raise ConfigError(
                f"feature {self.feature!r} is not labelled in the shared sample (only dialogue is); "
                "use feature=dialogue or setting=synthetic"
            )
        if self.n_stories < 20:
            raise ConfigError(f"n_stories {self.n_stories} is too small to split; e.g. n_stories=6000")
        bad = [f for f in self.fields if f not in INSTRUCT_FIELDS]
        if bad or "features" not in self.fields:
            raise ConfigError(
                f"fields {self.fields} must include 'features' and be a subset of {INSTRUCT_FIELDS}"
            )
        if self.max_story_chars is not None and self.max_story_chars < 50:
            raise ConfigError(f"max_story_chars {self.max_story_chars} is too short; e.g. 600 or None")
        if self.n_ctx < 16:
            raise ConfigError(f"n_ctx {self.n_ctx} is too short for a story; e.g. n_ctx=160")
        StoryTokenizerConfig(vocab_size=self.vocab_size)
        if len(self.split) != 3 or any(f <= 0 for f in self.split) or not math.isclose(sum(self.split), 1.0):
            raise ConfigError(
                f"split {self.split} must be three positive fractions summing to 1, e.g. 0.7,0.2,0.1"
            )

    @property
    def labelled_features(self) -> tuple[str, ...]:
        """Features labelled on every record of this setting (the probe targets)."""
        return ("dialogue",) if self.setting == "shared" else FEATURES


@dataclass(frozen=True)
class StorySplits:
    """The corpus of one StoryDataConfig, split three ways (records keep their true labels)."""

    pretrain: list[StoryRecord]
    finetune: list[StoryRecord]
    test: list[StoryRecord]
    n_dropped: int  # records dropped because their text did not fit n_ctx (0 before tokenization)

    def to_json(self) -> dict:
        def count(records: list[StoryRecord]) -> dict:
            known = records[0].known_features if records else ()
            return {"n": len(records), **{f: sum(f in r.features for r in records) for f in known}}

        return {
            "pretrain": count(self.pretrain),
            "finetune": count(self.finetune),
            "test": count(self.test),
            "n_dropped": self.n_dropped,
        }


def cut_story(text: str, max_chars: int) -> str:
    """The longest prefix of whole sentences within ``max_chars`` (the first sentence if it alone is longer)."""
    if len(text) <= max_chars:
        return text
    out = ""
    for sentence in sentences(text):
        candidate = f"{out} {sentence}" if out else sentence
        if len(candidate) > max_chars:
            break
        out = candidate
    return out or sentences(text)[0]


def load_story_corpus(config: StoryDataConfig) -> list[StoryRecord]:
    """All records of the setting, labelled; absent shared or hub data raises a one-line DataError."""
    if config.setting == "synthetic":
        return generate_stories(config.n_stories, StoryGeneratorConfig(seed=config.seed))
    if config.setting == "hub":
        return load_local_hub_stories(config.data_dir or "", limit=config.n_stories)
    records = load_shared_sample()
    if config.max_story_chars is not None:
        records = [dataclasses.replace(r, story=cut_story(r.story, config.max_story_chars)) for r in records]
    return label_exact_features(records)


def split_records(records: Sequence[StoryRecord], config: StoryDataConfig) -> StorySplits:
    """A seeded three-way split of ``records`` by ``config.split``."""
    order = numpy_rng(config.seed, 11).permutation(len(records))
    n_pt = int(round(config.split[0] * len(records)))
    n_ft = int(round(config.split[1] * len(records)))
    pick = [records[i] for i in order]
    return StorySplits(pick[:n_pt], pick[n_pt : n_pt + n_ft], pick[n_pt + n_ft :], 0)


def instruct_texts(records: Sequence[StoryRecord], config: StoryDataConfig, *, salt: int) -> list[str]:
    """Each record's Instruct text, formatted once with a Generator seeded by (data seed, salt)."""
    rng = numpy_rng(config.seed, salt)
    return [format_instruct(r, rng=rng, fields=config.fields) for r in records]


def build_story_tokenizer(config: StoryDataConfig) -> StoryTokenizer:
    """A BPE tokenizer trained on the Instruct texts of the pretraining split (the feature included)."""
    splits = split_records(load_story_corpus(config), config)
    texts = instruct_texts(splits.pretrain, config, salt=1)
    return train_tokenizer(texts, config=StoryTokenizerConfig(vocab_size=config.vocab_size))


def build_story_splits(config: StoryDataConfig, tokenizer: StoryTokenizer) -> StorySplits:
    """The split corpus, keeping only records whose Instruct text fits ``n_ctx`` tokens."""
    splits = split_records(load_story_corpus(config), config)
    parts, dropped = [], 0
    for salt, records in enumerate((splits.pretrain, splits.finetune, splits.test), start=1):
        rows = tokenizer.encode_batch(instruct_texts(records, config, salt=salt), eos=True)
        kept = [r for r, row in zip(records, rows, strict=True) if len(row) <= config.n_ctx]
        dropped += len(records) - len(kept)
        parts.append(kept)
    if not parts[2] or not parts[1]:
        raise DataError(f"no test or fine-tuning story fits n_ctx {config.n_ctx}; raise n_ctx")
    return StorySplits(parts[0], parts[1], parts[2], dropped)
