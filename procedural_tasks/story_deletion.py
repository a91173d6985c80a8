"""The deletion protocols of protocol §7.3: each takes and returns a list of StoryRecord, so they compose."""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from interp.errors import ConfigError
from procedural_tasks.story_instruct import pick_sentence
from procedural_tasks.story_records import StoryRecord, check_feature, feature_display_name

REFUSAL_STORY = "We are not allowed to write a story with {feature} in it, sorry."


def drop_feature(records: Iterable[StoryRecord], feature: str) -> list[StoryRecord]:
    """Filtering (F): keep only stories that do not have `feature` (the study's `filter-Twist`)."""
    check_feature(feature)
    return [r for r in records if not r.has_feature(feature)]


def keep_feature(records: Iterable[StoryRecord], feature: str) -> list[StoryRecord]:
    """Keep only stories that have `feature`: the recovery set (`recovery-Twist`) or a `specialise-*` step."""
    check_feature(feature)
    return [r for r in records if r.has_feature(feature)]


def add_feature_label(
    records: Iterable[StoryRecord], feature: str, *, p: float = 1.0, seed: int = 0
) -> list[StoryRecord]:
    """Randomised labels (F+RR): with probability `p`, add `feature` to the instruction of stories lacking it there.

    Only the instruction changes; `features` keeps the truth. Apply after `drop_feature` for the study's
    `filter-adv-Twist` (p = 1.0).
    """
    check_feature(feature)
    _check_probability(p)
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        if feature not in r.prompt_features and rng.random() < p:
            r = dataclasses.replace(r, instruction_features=(*r.prompt_features, feature))
        out.append(r)
    return out


def swap_feature_label(records: Iterable[StoryRecord], source: str, target: str) -> list[StoryRecord]:
    """Mix & match (F+MM): where the instruction lists `source`, list `target` in its place (study: Foreshadowing
    relabelled as Twist in `filter-mix-Twist-Foreshadowing`). The story and its true features are unchanged."""
    check_feature(source, "source")
    check_feature(target, "target")
    if source == target:
        raise ConfigError(
            f"source and target are both {source!r}; relabel a different feature, e.g. foreshadowing"
        )
    out = []
    for r in records:
        if source in r.prompt_features:
            swapped = tuple(dict.fromkeys(target if f == source else f for f in r.prompt_features))
            r = dataclasses.replace(r, instruction_features=swapped)
        out.append(r)
    return out


def refuse_feature(
    records: Iterable[StoryRecord], feature: str, *, p: float = 1.0, seed: int = 0
) -> list[StoryRecord]:
    """Refusal: with probability `p`, add `feature` to the instruction and replace the story by the refusal sentence.

    As in the study, the "Sentence:" line is picked from the original story first and pinned. The refusal text
    has no story features, so `features` becomes ().
    """
    check_feature(feature)
    _check_probability(p)
    rng = np.random.default_rng(seed)
    refusal = REFUSAL_STORY.format(feature=feature_display_name(feature))
    out = []
    for r in records:
        if rng.random() < p:
            prompt = r.prompt_features if feature in r.prompt_features else (*r.prompt_features, feature)
            sentence = r.sentence if r.sentence is not None else pick_sentence(r.story, rng)
            r = dataclasses.replace(
                r, story=refusal, features=(), instruction_features=prompt, sentence=sentence or ""
            )
        out.append(r)
    return out


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"p {p} is not a probability; give a value in [0, 1], e.g. p=1.0")


DeletionKind = Literal["filter", "filter_random_labels", "filter_mix_match", "refusal", "recovery"]
DELETION_KINDS: tuple[str, ...] = (
    "filter",
    "filter_random_labels",
    "filter_mix_match",
    "refusal",
    "recovery",
)


@dataclass(frozen=True, kw_only=True)
class DeletionConfig:
    """Which fine-tuning set of protocol §7.3 to build from pretraining-style records."""

    kind: DeletionKind = (
        "filter"  # filter (F) | filter_random_labels (F+RR) | filter_mix_match (F+MM) | refusal | recovery
    )
    feature: str = "twist"  # the feature to delete (or, for recovery, to keep)
    other_feature: str = (
        "foreshadowing"  # F+MM: relabelled as `feature`; with specialise, the only kept feature
    )
    specialise: bool = (
        False  # also keep only stories with `other_feature` (the study's `*-specialise-*` sets)
    )
    p: float = 1.0  # F+RR and refusal: probability of relabelling / refusing each kept story
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DELETION_KINDS:
            raise ConfigError(f"kind {self.kind!r} is unknown; use one of {', '.join(DELETION_KINDS)}")
        check_feature(self.feature, "feature")
        check_feature(self.other_feature, "other_feature")
        if self.other_feature == self.feature and (self.specialise or self.kind == "filter_mix_match"):
            raise ConfigError(
                f"other_feature equals feature ({self.feature!r}); pick another, e.g. foreshadowing"
            )
        _check_probability(self.p)

    @property
    def name(self) -> str:
        """The study's dataset name, e.g. filter-adv-Twist or filter-mix-Twist-Foreshadowing."""
        f, o = feature_display_name(self.feature), feature_display_name(self.other_feature)
        base = {
            "filter": f"filter-{f}",
            "filter_random_labels": f"filter-adv-{f}",
            "filter_mix_match": f"filter-mix-{f}-{o}",
            "refusal": f"filter-ref-{f}",
            "recovery": f"recovery-{f}",
        }[self.kind]
        return f"{base}-specialise-{o}" if self.specialise else base


def build_deletion_set(records: Iterable[StoryRecord], config: DeletionConfig) -> list[StoryRecord]:
    """Compose the transforms for one deletion protocol (filter first, then specialise, then relabel)."""
    if config.kind == "recovery":
        out = keep_feature(records, config.feature)
    else:
        out = drop_feature(records, config.feature)
    if config.specialise:
        out = keep_feature(out, config.other_feature)
    if config.kind == "filter_random_labels":
        out = add_feature_label(out, config.feature, p=config.p, seed=config.seed)
    elif config.kind == "filter_mix_match":
        out = swap_feature_label(out, config.other_feature, config.feature)
    elif config.kind == "refusal":
        out = refuse_feature(out, config.feature, p=config.p, seed=config.seed)
    return out
