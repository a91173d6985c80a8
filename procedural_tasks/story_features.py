"""Local story-feature classifiers, replacing the study's fine-tuned GPT-3.5 judge (protocol §7.5).

Two kinds, with different claims:

1. `has_dialogue(text)`: exact on any text. Definition: the text contains a quotation, i.e. two double quote marks
   that pair up (the 1st with the 2nd, the 3rd with the 4th, ...) with at least one letter between them. Double
   quote marks are the straight `"` and the typographic `“ ” „ « »`, in any mix (TinyStories has both, sometimes in
   one quotation). Single quotes and apostrophes (' ‘ ’) never count: they are ambiguous with "Lily's" and "don't".
   An unpaired final quote mark (a story cut off inside speech) does not count. This labels "the text contains
   quoted speech"; it is not TinyStories-Instruct's "Dialogue" prompt feature, which was a request to GPT-4.

2. `synthetic_features(text)` (and `has_twist`, `has_foreshadowing`, `has_bad_ending`, `has_moral_value`,
   `has_conflict`): exact rules for the surface forms that `story_generator` plants (see its docstring). They are
   written independently of the generator's templates, so the test that they agree checks both. On clean generated
   stories they agree with the planted labels on every story; on corrupted generations (`corrupt_story`) they lose
   recall, never precision, because a corrupted planted sentence no longer matches. They say nothing useful about
   real stories: a real twist has no fixed form. So a generation only counts as having a feature if it reproduces
   the planted form whole: a strict judge, which under-counts sloppy generations (truncation always cuts the final
   sentence, so a bad ending is never recalled from a truncated story).

A looser twist rule, `has_twist_opener`, exists for judging the generations of small models: it accepts any text
that contains one of the generator's four twist openers ("But then, out of nowhere," ...), whatever follows, since a
small model often garbles the event after a correct opener. The openers occur in no other template, so on the
generator's distribution it keeps precision 1.0 and gains recall under corruption (the README gives the measured
recall of both rules per corruption kind). It can still over-count a generation that states an opener and then no
twist at all; studies report both rules.

On real TinyStories text (`label_exact_features`) only dialogue is labelled. Twist, foreshadowing, bad ending,
moral value and conflict have no exact surface form there; a keyword rule ("learned that", "sad") would give
labels of unknown precision, and the study's labels came from GPT-4 prompts, not the text, so we leave them
unlabelled (`known_features=("dialogue",)`), and the deletion transforms refuse to filter on them.
"""

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence

from procedural_tasks.story_records import FEATURES, QUOTE_CHARS, StoryRecord

_QUOTE_RE = re.compile(f"[{QUOTE_CHARS}]")
_LETTER_RE = re.compile(r"[^\W\d_]")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"”])\s+")


def quotations(text: str) -> list[str]:
    """The quoted spans of `text` (without their quote marks) that hold at least one letter."""
    positions = [m.start() for m in _QUOTE_RE.finditer(text)]
    spans = [text[a + 1 : b] for a, b in zip(positions[0::2], positions[1::2], strict=False)]
    return [s for s in spans if _LETTER_RE.search(s)]


def has_dialogue(text: str) -> bool:
    """Whether the text contains a quotation (see the module docstring for the exact definition)."""
    return bool(quotations(text))


def sentences(text: str) -> list[str]:
    """Split on whitespace after . ! ? (optionally followed by a closing double quote)."""
    return [s for s in _SENTENCE_SPLIT.split(text.strip()) if s]


_NAME = r"[A-Z][a-z]+"
_WORD = r"[a-z]+"
_PHRASE = r"[a-z]+(?: [a-z]+)?"

_TWIST = re.compile(
    r"(?:But then, something unexpected happened:|Suddenly, something surprising happened:"
    r"|Then, to everyone's surprise,|But then, out of nowhere,) "
    rf"(?:the {_PHRASE} began to talk|{_NAME} turned into an? {_WORD}|an? {_WORD} jumped out of the {_PHRASE}"
    rf"|the {_PHRASE} started to fly away|the {_WORD} was full of {_WORD})!"
)
_HINT = re.compile(
    rf"{_NAME} found an? (?P<item>{_WORD}) on the ground and kept it, just in case\."
    rf"|{_NAME} did not know yet how important the (?P<item2>{_WORD}) would be\."
    rf"|There was an old (?P<item3>{_WORD}) by the door, and {_NAME} took it along\."
)
_PAYOFF = re.compile(
    rf"Good thing {_NAME} had the (?P<item>{_WORD}), because it was just what (?:he|she) needed\."
    rf"|Then {_NAME} remembered the (?P<item2>{_WORD}), and it saved the day\."
    rf"|The (?P<item3>{_WORD}) from before was very useful now\."
)
_SAD_ENDING = re.compile(
    rf"In the end, {_NAME} was very sad and went home alone\."
    rf"|The {_PHRASE} was lost forever, and {_NAME} cried\."
    rf"|{_NAME} never saw (?:his|her) {_PHRASE} again\."
    rf"|Nobody came to help, and {_NAME} was sad for a long time\."
)
_MORAL = re.compile(
    rf"(?:{_NAME} learned that|The moral of the story is that|From that day on, {_NAME} knew that) "
    r"(?:sharing is caring|it is good to be kind|friends should help each other|telling the truth is important"
    r"|being brave is good|it is okay to ask for help)\."
)
_CONFLICT = re.compile(
    rf"{_NAME} and {_NAME} both wanted the {_PHRASE}, and they began to argue\."
    rf"|{_NAME} took {_NAME}'s {_PHRASE}, and they had a big fight\."
    rf"|{_NAME} and {_NAME} could not agree about the {_PHRASE}, so they fought\."
)


_TWIST_OPENER = re.compile(
    r"But then, something unexpected happened:|Suddenly, something surprising happened:"
    r"|Then, to everyone's surprise,|But then, out of nowhere,"
)


def _item(match: re.Match) -> str:
    return match.group("item") or match.group("item2") or match.group("item3")


def has_twist(text: str) -> bool:
    """A sentence "<twist opener> <unexpected event>!" in the generator's forms."""
    return any(_TWIST.fullmatch(s) for s in sentences(text))


def has_twist_opener(text: str) -> bool:
    """Looser twist rule for small-model generations: one of the four twist openers occurs anywhere in the text."""
    return bool(_TWIST_OPENER.search(text))


def has_foreshadowing(text: str) -> bool:
    """A hint sentence introducing an item, followed later by a payoff sentence naming the same item."""
    hinted: set[str] = set()
    for s in sentences(text):
        if match := _HINT.fullmatch(s):
            hinted.add(_item(match))
        elif (match := _PAYOFF.fullmatch(s)) and _item(match) in hinted:
            return True
    return False


def has_bad_ending(text: str) -> bool:
    """The final sentence is one of the generator's sad endings."""
    parts = sentences(text)
    return bool(parts) and bool(_SAD_ENDING.fullmatch(parts[-1]))


def has_moral_value(text: str) -> bool:
    """A sentence stating one of the generator's morals."""
    return any(_MORAL.fullmatch(s) for s in sentences(text))


def has_conflict(text: str) -> bool:
    """A sentence where the two characters argue or fight over an object."""
    return any(_CONFLICT.fullmatch(s) for s in sentences(text))


SYNTHETIC_CLASSIFIERS: dict[str, Callable[[str], bool]] = {
    "twist": has_twist,
    "foreshadowing": has_foreshadowing,
    "dialogue": has_dialogue,
    "badending": has_bad_ending,
    "moralvalue": has_moral_value,
    "conflict": has_conflict,
}


# Looser rules for judging generations (see the module docstring); features without one use the strict rule.
LOOSE_CLASSIFIERS: dict[str, Callable[[str], bool]] = {"twist": has_twist_opener}


def synthetic_features(text: str) -> tuple[str, ...]:
    """The features of a (generated) synthetic story, in FEATURES order."""
    return tuple(f for f in FEATURES if SYNTHETIC_CLASSIFIERS[f](text))


def planted_feature_accuracy(
    records: Sequence[StoryRecord], texts: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """Per feature: accuracy, precision and recall of the synthetic classifier against the records' labels.

    `texts` replaces the story texts (e.g. corrupted generations) while the labels stay those of `records`.
    Precision or recall is NaN when it has no denominator.
    """
    texts = [r.story for r in records] if texts is None else texts
    predicted = [set(synthetic_features(t)) for t in texts]
    out = {}
    for f in FEATURES:
        pairs = [(f in r.features, f in p) for r, p in zip(records, predicted, strict=True)]
        tp = sum(a and b for a, b in pairs)
        n_pred, n_true = sum(b for _, b in pairs), sum(a for a, _ in pairs)
        out[f] = {
            "accuracy": sum(a == b for a, b in pairs) / len(pairs) if pairs else float("nan"),
            "precision": tp / n_pred if n_pred else float("nan"),
            "recall": tp / n_true if n_true else float("nan"),
        }
    return out


def label_exact_features(records: Iterable[StoryRecord]) -> list[StoryRecord]:
    """Label real stories with the features that can be read off the text exactly: dialogue only (see above).

    Any other labels the records had are dropped, so `known_features` is exactly ("dialogue",).
    """
    return [
        dataclasses.replace(
            r,
            features=("dialogue",) if has_dialogue(r.story) else (),
            known_features=("dialogue",),
            instruction_features=None,
        )
        for r in records
    ]
