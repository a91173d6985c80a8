"""Story records and feature names: the data type every story module shares (protocol §7.1).

A `StoryRecord` keeps two feature sets apart:

- `features`: the features the story text really has (the ground truth a probe or a classifier is scored on);
- `instruction_features`: what the Instruct prompt claims. `None` means "the same as `features`". The deletion
  protocols F+RR, F+MM and refusal change only this set, so the truth survives every transform.

`known_features` says which of the six features are labelled on a record at all. Hub records and synthetic stories
label all six; the plain-text sample labels none until `story_features.label_exact_features` adds dialogue.
Transforms that filter on a feature refuse records where it is not labelled, instead of treating "unknown" as "absent".

Feature names are lowercase everywhere in the code (as in the study's `STORY_FEATURES`). In the Instruct text they
are written with `str.capitalize()`, exactly as the study's `make_instruction` does: "Twist", "Badending",
"Moralvalue" (not the hub's "BadEnding"), so that a tokenizer and model see the study's strings.
"""

import re
from dataclasses import dataclass

from interp.errors import ConfigError, DataError

FEATURES: tuple[str, ...] = ("twist", "foreshadowing", "dialogue", "badending", "moralvalue", "conflict")
INSTRUCT_FIELDS: tuple[str, ...] = ("words", "features", "summary", "sentence")
QUOTE_CHARS = '"“”„«»'


def feature_display_name(feature: str) -> str:
    """The spelling of a feature in Instruct text: the study's `str.capitalize()` ("badending" -> "Badending")."""
    return feature.capitalize()


def normalize_feature(name: str) -> str:
    """Map a raw feature name ("BadEnding", "Bad Ending", "moral_value") to its lowercase key in FEATURES."""
    key = re.sub(r"[\s_\-]+", "", name).lower()
    if key not in FEATURES:
        raise DataError(f"unknown story feature {name!r}; use one of {', '.join(FEATURES)}")
    return key


@dataclass(frozen=True, kw_only=True)
class StoryRecord:
    """One story with its Instruct metadata and its feature labels (see the module docstring)."""

    story: str  # the story text, stripped
    words: tuple[str, ...] = ()  # the Instruct "Words:" list; () = absent
    features: tuple[str, ...] = ()  # features the story text has (lowercase, from FEATURES)
    summary: str | None = None  # the Instruct "Summary:"; None = absent
    known_features: tuple[str, ...] = FEATURES  # features labelled on this record (present or absent)
    instruction_features: tuple[str, ...] | None = None  # what the prompt claims; None = same as `features`
    sentence: str | None = None  # pinned "Sentence:" line; None = pick one from the story when formatting
    source: str = "unknown"  # where it came from: "hub", "local", "sample", "synthetic", ...

    def __post_init__(self) -> None:
        if not isinstance(self.story, str):
            raise DataError(f"story must be a str, got {type(self.story).__name__}")
        for name in ("words", "features", "known_features"):
            if not isinstance(getattr(self, name), tuple):
                raise DataError(f"{name} must be a tuple, e.g. {name}=('dialogue',)")
        _check_feature_tuple("features", self.features)
        _check_feature_tuple("known_features", self.known_features)
        if self.instruction_features is not None:
            if not isinstance(self.instruction_features, tuple):
                raise DataError("instruction_features must be a tuple or None, e.g. ('twist',)")
            _check_feature_tuple("instruction_features", self.instruction_features)
        unknown = [f for f in self.features if f not in self.known_features]
        if unknown:
            raise DataError(
                f"features {unknown} are not in known_features {self.known_features}; add them there"
            )

    @property
    def prompt_features(self) -> tuple[str, ...]:
        """The features the Instruct prompt lists."""
        return self.features if self.instruction_features is None else self.instruction_features

    def has_feature(self, feature: str) -> bool:
        """Whether the story text has `feature`; DataError if this record does not label it."""
        if feature not in self.known_features:
            raise DataError(
                f"feature {feature!r} is not labelled on this {self.source} story (known: {self.known_features}); "
                "use hub or synthetic stories, or label it first"
            )
        return feature in self.features


def _check_feature_tuple(name: str, values: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in FEATURES]
    if bad:
        raise DataError(f"{name} has unknown feature(s) {bad}; use lowercase names from {FEATURES}")
    if len(set(values)) != len(values):
        raise DataError(f"{name} {values} has duplicates; list each feature once")


def check_feature(feature: str, field: str = "feature") -> str:
    """Validate a feature name given by the user; ConfigError names the field."""
    if feature not in FEATURES:
        raise ConfigError(f"{field} {feature!r} is not a story feature; use one of {', '.join(FEATURES)}")
    return feature
