"""SYNTHETIC TinyStories-style stories from templates, with planted features whose presence is known exactly.

These are not TinyStories: they are a stand-in that runs offline and gives ground-truth labels for all six
features, so the deletion protocols and probes can be exercised without the hub data or a GPT-3.5 judge.
Every record has `source="synthetic"`.

A story is: an opening, the planted feature sentences and neutral filler sentences, then an ending: 3-8 sentences
(planted sentences are never dropped, so with max_sentences below 8 a feature-heavy story can be longer than
max_sentences). Characters, places, objects and templates vary.
Each feature is planted independently with its own probability (`StoryGeneratorConfig.p_*`). Surface forms:

- twist: one sentence "<opener> <unexpected event>!" placed after at least one middle sentence (not always at the
  same index), e.g. "But then, out of nowhere, a frog jumped out of the box!". Openers: "But then, something
  unexpected happened:", "Suddenly, something surprising happened:", "Then, to everyone's surprise,",
  "But then, out of nowhere,".
- foreshadowing: a hint sentence right after the opening that introduces an item ("Lily did not know yet how
  important the rope would be.") and a payoff sentence after the middle that names the same item ("Then Lily
  remembered the rope, and it saved the day.").
- dialogue: one or two sentences of quoted speech with straight double quotes ('Tom asked, "Where are we going?"').
  Stories without dialogue have no quote marks at all, but do have apostrophes ("Lily's kite", "didn't").
- badending: the final sentence is a sad one ("Tom never saw his kite again."); otherwise it is a happy one.
- moralvalue: the second-to-last sentence states a moral ("The moral of the story is that sharing is caring.").
- conflict: a sentence in the middle where the two characters fight or argue over an object.

Filler sentences include distractors that share words with the features but not their forms ("Suddenly, it
started to rain, ...", "... felt sad for a moment, but then ... smiled.", "... said hello and waved."), so no
single token at a fixed position identifies a feature. Summaries describe the plot only (characters, place,
object) and never a feature. `story_features.synthetic_features` recovers the planted labels exactly.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from interp.errors import ConfigError
from procedural_tasks.story_records import FEATURES, StoryRecord

# (name, noun, subject pronoun, possessive pronoun)
CHARACTERS: tuple[tuple[str, str, str, str], ...] = (
    *((n, "girl", "she", "her") for n in ("Lily", "Mia", "Sue", "Anna", "Emma", "Lucy", "Zoe", "Amy")),
    *((n, "boy", "he", "his") for n in ("Tom", "Ben", "Max", "Sam", "Jack", "Leo", "Tim", "Finn")),
    ("Spot", "dog", "he", "his"),
    ("Kitty", "cat", "she", "her"),
    ("Pip", "bird", "he", "his"),
    ("Daisy", "bunny", "she", "her"),
)
ADJECTIVES = ("little", "happy", "kind", "curious", "brave", "small", "shy")
OBJECT_ADJECTIVES = ("shiny", "soft", "big", "pretty", "funny", "new", "old")
OBJECTS = (
    "ball",
    "kite",
    "toy car",
    "red hat",
    "teddy bear",
    "book",
    "box",
    "shell",
    "flower",
    "boat",
    "drum",
)
ANIMALS = ("dog", "cat", "bird", "frog", "duck", "bunny", "fish", "puppy")
PLACES = ("park", "garden", "forest", "beach", "farm", "lake", "yard", "playground")
ITEMS = ("key", "rope", "whistle", "map", "umbrella", "flashlight", "ribbon", "shovel")
PLURALS = ("bubbles", "butterflies", "balloons", "candy", "stars")
MORALS = (
    "sharing is caring",
    "it is good to be kind",
    "friends should help each other",
    "telling the truth is important",
    "being brave is good",
    "it is okay to ask for help",
)

OPENINGS = (
    "Once upon a time, there was a {adj} {noun} named {name}.",
    "One day, a {adj} {noun} named {name} went to the {place}.",
    "There once was a {adj} {noun} called {name}.",
    "{name} was a {adj} {noun} who loved the {place}.",
)
FILLERS = (
    "{name} liked to play with {pos} {obj}.",
    "{Pro} took {pos} {obj} to the {place}.",
    "The sun was warm and the sky was blue.",
    "{name} and {friend} played together at the {place}.",
    "{Pro} saw {a_adj2} {animal} near a big tree.",
    "{name}'s {obj} was very {adj2}.",
    "{Pro} didn't want to go home yet.",
    "Suddenly, it started to rain, so they ran under a tree.",
    "Something smelled very good in the {place}.",
    "{name} felt sad for a moment, but then {pro} smiled.",
    "{friend} said hello and waved.",
    "{name} had {a_item} in {pos} bag.",
    "They learned a new song at the {place}.",
    "{friend} wanted to see the {obj} too.",
)
SPEECH = (
    '{name} said, "I love my {obj}!"',
    '"Let\'s go to the {place}!" said {friend}.',
    '{friend} asked, "Can I play with your {obj}?"',
    '"Look at this {animal}!" {name} shouted.',
    '{name} said, "I\'m so happy today. We can play all day."',
    '{friend} asked, "Where are we going?"',
    '"This is so much fun!" said {name}.',
)
TWIST_OPENERS = (
    "But then, something unexpected happened:",
    "Suddenly, something surprising happened:",
    "Then, to everyone's surprise,",
    "But then, out of nowhere,",
)
TWIST_EVENTS = (
    "the {obj} began to talk!",
    "{friend} turned into {a_animal}!",
    "{a_animal} jumped out of the {obj}!",
    "the {obj} started to fly away!",
    "the {place} was full of {plural}!",
)
HINTS = (
    "{name} found {a_item} on the ground and kept it, just in case.",
    "{name} did not know yet how important the {item} would be.",
    "There was an old {item} by the door, and {name} took it along.",
)
PAYOFFS = (
    "Good thing {name} had the {item}, because it was just what {pro} needed.",
    "Then {name} remembered the {item}, and it saved the day.",
    "The {item} from before was very useful now.",
)
CONFLICTS = (
    "{name} and {friend} both wanted the {obj}, and they began to argue.",
    "{friend} took {name}'s {obj}, and they had a big fight.",
    "{name} and {friend} could not agree about the {obj}, so they fought.",
)
MORAL_LINES = (
    "{name} learned that {moral}.",
    "The moral of the story is that {moral}.",
    "From that day on, {name} knew that {moral}.",
)
SAD_ENDINGS = (
    "In the end, {name} was very sad and went home alone.",
    "The {obj} was lost forever, and {name} cried.",
    "{name} never saw {pos} {obj} again.",
    "Nobody came to help, and {name} was sad for a long time.",
)
HAPPY_ENDINGS = (
    "In the end, {name} was very happy.",
    "{name} and {friend} played together until the sun went down.",
    "{name} went home with a big smile.",
    "And they all lived happily ever after.",
)
SUMMARIES = (
    "{name}, a {adj} {noun}, spends a day at the {place} with {pos} {obj} and {friend}.",
    "A {adj} {noun} named {name} and {pos} friend {friend} have an adventure with a {obj}.",
    "{name} and {friend} go to the {place}, where {name} plays with {pos} {obj}.",
)

_DRAWS_PER_STORY = 96
_WORD_RE = re.compile(r"[a-z]+")


@dataclass(frozen=True, kw_only=True)
class StoryGeneratorConfig:
    """Probabilities of each planted feature, story length and the seed of a synthetic story set."""

    p_twist: float = 0.25  # probability that a story has a twist
    p_foreshadowing: float = 0.2
    p_dialogue: float = 0.5
    p_badending: float = 0.2
    p_moralvalue: float = 0.2
    p_conflict: float = 0.2
    min_sentences: int = 3  # target length is drawn uniformly in [min_sentences, max_sentences]
    max_sentences: int = 8  # planted sentences are never dropped, so a feature-heavy story can exceed it
    paragraph_break_p: float = 0.15  # probability of a newline instead of a space between two sentences
    seed: int = 0

    def __post_init__(self) -> None:
        for feature in FEATURES:
            p = getattr(self, f"p_{feature}")
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"p_{feature} {p} is not a probability; give a value in [0, 1], e.g. 0.25")
        if not 0.0 <= self.paragraph_break_p <= 1.0:
            raise ConfigError(f"paragraph_break_p {self.paragraph_break_p} is not in [0, 1]; e.g. 0.15")
        if self.min_sentences < 3:
            raise ConfigError(
                f"min_sentences {self.min_sentences} is below 3 (opening, middle, ending); e.g. 3"
            )
        if self.max_sentences < self.min_sentences:
            raise ConfigError(
                f"max_sentences {self.max_sentences} is below min_sentences {self.min_sentences}; e.g. max_sentences=8"
            )

    @property
    def feature_probs(self) -> dict[str, float]:
        """Feature name -> planting probability, in FEATURES order."""
        return {f: getattr(self, f"p_{f}") for f in FEATURES}


class _Draws:
    """Reads pre-drawn uniforms in order: one Generator call per story keeps generation fast."""

    def __init__(self, values: list[float]) -> None:
        self.values = values  # an IndexError here means _DRAWS_PER_STORY is too small
        self.i = -1

    def uniform(self) -> float:
        self.i += 1
        return self.values[self.i]

    def chance(self, p: float) -> bool:
        return self.uniform() < p

    def index(self, n: int) -> int:
        return min(int(self.uniform() * n), n - 1)

    def pick(self, seq: Sequence):
        return seq[self.index(len(seq))]

    def order(self, n: int) -> list[int]:
        keys = [self.uniform() for _ in range(n)]
        return sorted(range(n), key=keys.__getitem__)


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _slots(draws: _Draws) -> dict[str, str]:
    """The template slots of one story: its two characters, place, objects and moral."""
    hero = draws.pick(CHARACTERS)
    friend = CHARACTERS[(CHARACTERS.index(hero) + 1 + draws.index(len(CHARACTERS) - 1)) % len(CHARACTERS)]
    animal, item, adj2 = draws.pick(ANIMALS), draws.pick(ITEMS), draws.pick(OBJECT_ADJECTIVES)
    return {
        "name": hero[0],
        "noun": hero[1],
        "pro": hero[2],
        "Pro": hero[2].capitalize(),
        "pos": hero[3],
        "friend": friend[0],
        "adj": draws.pick(ADJECTIVES),
        "adj2": adj2,
        "a_adj2": _article(adj2),
        "obj": draws.pick(OBJECTS),
        "place": draws.pick(PLACES),
        "animal": animal,
        "a_animal": _article(animal),
        "item": item,
        "a_item": _article(item),
        "plural": draws.pick(PLURALS),
        "moral": draws.pick(MORALS),
    }


def _templates(draws: _Draws, config: StoryGeneratorConfig, planted: dict[str, bool]) -> list[str]:
    """The story's sentence templates in order: opening, planted and filler sentences, ending."""
    n_other = sum(planted[f] for f in ("twist", "conflict", "moralvalue")) + 2 * planted["foreshadowing"]
    n_speech = (1 + draws.index(2)) if planted["dialogue"] else 0
    n_speech = min(n_speech, max(1, config.max_sentences - 2 - n_other))
    n_planted = n_other + n_speech
    target = config.min_sentences + draws.index(config.max_sentences - config.min_sentences + 1)
    n_fill = min(max(target - 2 - n_planted, 0 if n_planted else 1), len(FILLERS))

    middle = [FILLERS[i] for i in draws.order(len(FILLERS))[:n_fill]]
    middle += [SPEECH[i] for i in draws.order(len(SPEECH))[:n_speech]]
    if planted["conflict"]:
        middle.append(draws.pick(CONFLICTS))
    middle = [middle[i] for i in draws.order(len(middle))]
    if planted["twist"]:
        at = 1 + draws.index(len(middle)) if middle else 0
        middle.insert(at, draws.pick(TWIST_OPENERS) + " " + draws.pick(TWIST_EVENTS))

    sentences = [draws.pick(OPENINGS)]
    if planted["foreshadowing"]:
        sentences.append(draws.pick(HINTS))
    sentences += middle
    if planted["foreshadowing"]:
        sentences.append(draws.pick(PAYOFFS))
    if planted["moralvalue"]:
        sentences.append(draws.pick(MORAL_LINES))
    sentences.append(draws.pick(SAD_ENDINGS if planted["badending"] else HAPPY_ENDINGS))
    return sentences


def _key_words(draws: _Draws, story: str, slots: dict[str, str]) -> tuple[str, ...]:
    """Up to three of the story's own content words, for the Instruct "Words:" line."""
    candidates = (
        slots["obj"].split()[-1],
        slots["place"],
        slots["adj"],
        slots["noun"],
        slots["animal"],
        slots["item"],
        slots["adj2"],
        "play",
    )
    in_story = set(_WORD_RE.findall(story))
    words = tuple(dict.fromkeys(w for w in candidates if w in in_story))
    return tuple(words[i] for i in draws.order(len(words))[:3])


def _story(draws: _Draws, config: StoryGeneratorConfig) -> StoryRecord:
    planted = {f: draws.chance(p) for f, p in config.feature_probs.items()}
    slots = _slots(draws)
    sentences = _templates(draws, config, planted)
    parts = [sentences[0].format_map(slots)]
    for template in sentences[1:]:
        parts.append("\n" if draws.chance(config.paragraph_break_p) else " ")
        parts.append(template.format_map(slots))
    story = "".join(parts)
    return StoryRecord(
        story=story,
        words=_key_words(draws, story, slots),
        features=tuple(f for f in FEATURES if planted[f]),
        summary=draws.pick(SUMMARIES).format_map(slots),
        source="synthetic",
    )


def generate_stories(n: int, config: StoryGeneratorConfig | None = None) -> list[StoryRecord]:
    """`n` synthetic stories with planted, ground-truth features; the same config (seed included) gives the same list."""
    config = config or StoryGeneratorConfig()
    if n < 0:
        raise ConfigError(f"n {n} is negative; ask for a number of stories, e.g. n=1000")
    rng = np.random.default_rng(config.seed)
    uniforms = rng.random((n, _DRAWS_PER_STORY)).tolist()
    return [_story(_Draws(row), config) for row in uniforms]


CorruptionKind = Literal["truncate", "drop_sentence", "word_noise"]
CORRUPTION_KINDS: tuple[str, ...] = ("truncate", "drop_sentence", "word_noise")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”]?\s+")
_NOISE_WORDS = ("the", "and", "ball", "happy", "went", "said", "big", "tree", "then", "very")


def corrupt_story(text: str, *, kind: CorruptionKind, rng: np.random.Generator, noise_p: float = 0.1) -> str:
    """Imitate an imperfect generation, to measure the feature classifier off the clean templates.

    truncate: cut at a random character in the second half (a generation stopped by a token limit);
    drop_sentence: delete one random sentence; word_noise: replace each word with probability `noise_p`.
    """
    if kind == "truncate":
        return text[: int(len(text) * rng.uniform(0.5, 1.0))]
    if kind == "drop_sentence":
        bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
        spans = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        if len(spans) < 2:
            return text
        a, b = spans[int(rng.integers(len(spans)))]
        return (text[:a] + text[b:]).strip()
    if kind == "word_noise":
        words = text.split(" ")
        for i in np.flatnonzero(rng.random(len(words)) < noise_p):
            words[i] = _NOISE_WORDS[int(rng.integers(len(_NOISE_WORDS)))]
        return " ".join(words)
    raise ConfigError(f"kind {kind!r} is not a corruption; use one of {', '.join(CORRUPTION_KINDS)}")
