"""TinyStories data: the record type, loaders (Hugging Face hub, local JSON/text), Instruct formatting and the
deletion protocols of Jain et al. 2023 (protocol §7.1 and §7.3).

A `StoryRecord` keeps two feature sets apart:

- `features`: the features the story text really has (the ground truth a probe or a classifier is scored on);
- `instruction_features`: what the Instruct prompt claims. `None` means "the same as `features`". The deletion
  protocols F+RR, F+MM and refusal change only this set, so the truth survives every transform.

`known_features` says which of the six features are labelled on a record at all. Hub records and synthetic stories
label all six; the plain-text sample labels none until `story_features.label_exact_features` adds dialogue.
Transforms that filter on a feature refuse records where it is not labelled, instead of treating "unknown" as "absent".

The hub loader downloads `TinyStories_all_data.tar.gz` (over 1 GB) into the Hugging Face cache once and
extracts its 50 `data*.json` shards to `$FTMECH_DATA_DIR/tinystories/` (default `~/.cache/ftmech/`); later calls read
the shards and never touch the network. Without the shards and without network it raises OfflineError at once.

Feature names are lowercase everywhere in the code (as in the study's `STORY_FEATURES`). In the Instruct text they
are written with `str.capitalize()`, exactly as the study's `make_instruction` does: "Twist", "Badending",
"Moralvalue" (not the hub's "BadEnding"), so that a tokenizer and model see the study's strings.
"""

import dataclasses
import json
import os
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from interp.errors import ConfigError, DataError, OfflineError

FEATURES: tuple[str, ...] = ("twist", "foreshadowing", "dialogue", "badending", "moralvalue", "conflict")
INSTRUCT_FIELDS: tuple[str, ...] = ("words", "features", "summary", "sentence")
REFUSAL_STORY = "We are not allowed to write a story with {feature} in it, sorry."
HUB_REPO_ID = "roneneldan/TinyStories"
HUB_ARCHIVE = "TinyStories_all_data.tar.gz"
PRETRAIN_SHARD_FRACTION = 0.8
TEXT_SEPARATOR = "<|endoftext|>"
SAMPLE_DIR_ENV = "FTMECH_TINYSTORIES_DIR"
DATA_DIR_ENV = "FTMECH_DATA_DIR"
OFFLINE_HINT = "pass --data synthetic or --data-dir PATH"

QUOTE_CHARS = '"“”„«»'
_SENTENCE_PIECE = re.compile(r"[^.!?]+")
_TERMINAL = re.compile(r"[.!?][\"”»’']?\s*$")


def feature_display_name(feature: str) -> str:
    """The spelling of a feature in Instruct text: the study's `str.capitalize()` ("badending" -> "Badending")."""
    return feature.capitalize()


def normalize_feature(name: str) -> str:
    """Map a raw feature name ("BadEnding", "Bad Ending", "moral_value") to its lowercase key in FEATURES."""
    key = re.sub(r"[\s_\-]+", "", name).lower()
    if key not in FEATURES:
        raise DataError(f"unknown story feature {name!r}; use one of {', '.join(FEATURES)}")
    return key


# ----------------------------------------------------------------------------------------------------------------
# The record


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


# ----------------------------------------------------------------------------------------------------------------
# Local loaders


def record_from_json(obj: dict, *, source: str = "local") -> StoryRecord:
    """One `TinyStories_all_data` record ({"story", "instruction": {"words", "features"}, "summary"})."""
    if not isinstance(obj, dict) or not isinstance(obj.get("story"), str):
        raise DataError("a TinyStories JSON record must be an object with a string 'story' field")
    instruction = obj.get("instruction") or {}
    words = tuple(str(w).strip() for w in instruction.get("words") or ())
    raw_features = instruction.get("features")
    if raw_features is None:
        features, known = (), ()
    else:
        features = tuple(dict.fromkeys(normalize_feature(str(f)) for f in raw_features))
        known = FEATURES
    summary = obj.get("summary")
    summary = summary.strip() if isinstance(summary, str) and summary.strip() else None
    return StoryRecord(
        story=obj["story"].strip(),
        words=tuple(w for w in words if w),
        features=features,
        summary=summary,
        known_features=known,
        source=source,
    )


def load_json_records(path: str | Path, *, source: str = "local") -> list[StoryRecord]:
    """Read a JSON list of TinyStories records (one `data*.json` shard) or a JSON-lines file of them."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            objs = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            objs = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}); give a TinyStories shard"
        ) from err
    if not isinstance(objs, list):
        raise DataError(f"{path} holds a JSON {type(objs).__name__}; expected a list of story records")
    records = []
    for i, obj in enumerate(objs):
        try:
            records.append(record_from_json(obj, source=source))
        except DataError as err:
            raise DataError(f"{path} record {i}: {err}") from err
    return records


def split_text_stories(text: str) -> list[str]:
    """Split plain TinyStories text on `<|endoftext|>`; drop empty pieces and a final story cut off mid-sentence.

    The final piece is kept only if it ends with sentence-final punctuation (optionally closed by a quote), since a
    byte-range sample such as the shared one ends in the middle of a story.
    """
    pieces = [p.strip() for p in text.split(TEXT_SEPARATOR)]
    ends_with_separator = text.rstrip().endswith(TEXT_SEPARATOR)
    if pieces and not ends_with_separator and pieces[-1] and not _TERMINAL.search(pieces[-1]):
        pieces = pieces[:-1]
    return [p for p in pieces if p]


def load_text_stories(path: str | Path, *, source: str = "local") -> list[StoryRecord]:
    """Read plain stories separated by `<|endoftext|>` lines; no metadata, so no feature is labelled."""
    stories = split_text_stories(Path(path).read_text(encoding="utf-8"))
    return [StoryRecord(story=s, known_features=(), source=source) for s in stories]


def load_local_stories(path: str | Path, *, source: str = "local") -> list[StoryRecord]:
    """Load a file (.json/.jsonl records or .txt plain stories) or a directory of them (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json")) + sorted(path.glob("*.jsonl"))
        if not files:
            files = sorted(path.glob("*.txt"))
        if not files:
            raise DataError(
                f"{path} has no .json, .jsonl or .txt story files; pass --data-dir to a TinyStories folder"
            )
        return [r for f in files for r in load_local_stories(f, source=source)]
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass --data-dir to a TinyStories file or folder")
    if path.suffix in (".json", ".jsonl"):
        return load_json_records(path, source=source)
    if path.suffix == ".txt":
        return load_text_stories(path, source=source)
    raise DataError(f"{path} has suffix {path.suffix!r}; use .json, .jsonl (records) or .txt (plain stories)")


def shared_sample_dir() -> Path | None:
    """The shared plain-text sample: $FTMECH_TINYSTORIES_DIR, else `../shared/data/tinystories` from the repo root."""
    env = os.environ.get(SAMPLE_DIR_ENV)
    path = (
        Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinystories"
    )
    return path if path.is_dir() and any(path.glob("*.txt")) else None


def load_shared_sample() -> list[StoryRecord]:
    """The shared 2 MiB TinyStories sample as unlabelled records (label them with story_features)."""
    path = shared_sample_dir()
    if path is None:
        raise DataError(
            f"the TinyStories sample is not found; set {SAMPLE_DIR_ENV} to the folder that holds it"
        )
    return [r for f in sorted(path.glob("*.txt")) for r in load_text_stories(f, source="sample")]


# ----------------------------------------------------------------------------------------------------------------
# The Hugging Face hub loader


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network, read now rather than at import."""
    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any(v is not None and v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in values)


def default_data_dir() -> Path:
    """Where the extracted hub shards live: $FTMECH_DATA_DIR/tinystories, else ~/.cache/ftmech/tinystories."""
    root = os.environ.get(DATA_DIR_ENV)
    base = Path(root) if root else Path.home() / ".cache" / "ftmech"
    return base / "tinystories" / "TinyStories_all_data"


def hub_shard_paths(data_dir: Path) -> list[Path]:
    """The extracted `data*.json` shards, sorted (shard 0 is the study's test split)."""
    return sorted(data_dir.glob("data*.json")) if data_dir.is_dir() else []


def download_hub_shards(
    *, data_dir: str | Path | None = None, hub_cache_dir: str | Path | None = None
) -> Path:
    """Make sure `TinyStories_all_data` is downloaded and extracted; return the folder of shards.

    Offline (HF_HUB_OFFLINE=1, no network, or a cache miss) raises OfflineError without waiting on the network:
    with HF_HUB_OFFLINE set only the local Hugging Face cache is read.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if hub_shard_paths(data_dir):
        return data_dir
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as err:
        raise ConfigError(
            "loading TinyStories from the hub needs huggingface_hub; pip install 'ftmech[hub]' or "
            + OFFLINE_HINT
        ) from err
    offline = hub_offline()
    try:
        archive = hf_hub_download(
            HUB_REPO_ID,
            HUB_ARCHIVE,
            repo_type="dataset",
            cache_dir=hub_cache_dir,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError as err:
        reason = "HF_HUB_OFFLINE is set" if offline else "there is no network"
        raise OfflineError(f"TinyStories is not cached and {reason}; {OFFLINE_HINT}") from err
    _extract_archive(Path(archive), data_dir)
    return data_dir


def _extract_archive(archive: Path, data_dir: Path) -> None:
    partial = data_dir.with_name(data_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")]
        for member in members:
            member.name = Path(member.name).name
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, partial, filter="data")
            else:
                tar.extract(member, partial)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(data_dir)


HubSplit = Literal["train", "test", "pretrain", "finetune", "all"]


def select_shards(shards: Sequence[Path], split: HubSplit) -> list[Path]:
    """The study's split: shard 0 is test, the rest train; pretrain/finetune = first 80% / last 20% of train."""
    train = list(shards[1:])
    cut = int(len(train) * PRETRAIN_SHARD_FRACTION)
    table = {
        "all": list(shards),
        "test": list(shards[:1]),
        "train": train,
        "pretrain": train[:cut],
        "finetune": train[cut:],
    }
    if split not in table:
        raise ConfigError(f"split {split!r} is unknown; use one of {', '.join(table)}")
    return table[split]


def load_hub_stories(
    *,
    split: HubSplit = "train",
    max_shards: int | None = None,
    data_dir: str | Path | None = None,
    hub_cache_dir: str | Path | None = None,
) -> list[StoryRecord]:
    """TinyStories with its Instruct metadata from the hub (`TinyStories_all_data`), as StoryRecords.

    `max_shards` reads only the first shards of the split (the archive has 50 shards in all).
    """
    if max_shards is not None and max_shards < 1:
        raise ConfigError(f"max_shards {max_shards} must be at least 1 (or None for all), e.g. max_shards=1")
    folder = download_hub_shards(data_dir=data_dir, hub_cache_dir=hub_cache_dir)
    shards = select_shards(hub_shard_paths(folder), split)
    if max_shards is not None:
        shards = shards[:max_shards]
    if not shards:
        raise DataError(f"{folder} has no shards for split {split!r}; delete the folder and download again")
    return [r for shard in shards for r in load_json_records(shard, source="hub")]


# ----------------------------------------------------------------------------------------------------------------
# Instruct formatting (protocol §7.1)


def quoted_mask(text: str) -> np.ndarray:
    """Boolean mask of the characters inside a quotation or that are quote marks (quote marks paired in order)."""
    mask = np.zeros(len(text), dtype=bool)
    positions = [i for i, c in enumerate(text) if c in QUOTE_CHARS]
    for i in positions:
        mask[i] = True
    for start, end in zip(positions[0::2], positions[1::2], strict=False):
        mask[start : end + 1] = True
    if len(positions) % 2:
        mask[positions[-1] :] = True
    return mask


def candidate_sentences(story: str) -> list[str]:
    """Sentences the "Sentence:" line may use: pieces between . ! ? with no quoted character, newlines removed.

    The study splits on . ! ? and drops pieces holding a straight quote; we also drop pieces inside a longer
    quotation, curly quotes, and empty pieces (the study could pick the empty piece after the last full stop).
    """
    mask = quoted_mask(story)
    out = []
    for match in _SENTENCE_PIECE.finditer(story):
        if mask[match.start() : match.end()].any():
            continue
        piece = match.group().replace("\n", " ").strip()
        if any(c.isalpha() for c in piece):
            out.append(piece)
    return out


def pick_sentence(story: str, rng: np.random.Generator) -> str | None:
    """A random non-quoted sentence of the story, without its final punctuation; None if there is none."""
    sentences = candidate_sentences(story)
    return sentences[int(rng.integers(len(sentences)))] if sentences else None


def instruct_lines(
    record: StoryRecord, *, rng: np.random.Generator, fields: Sequence[str] = INSTRUCT_FIELDS
) -> list[str]:
    """The shuffled instruction lines ("Words: …", "Features: …", "Summary: …", "Sentence: …").

    A line is left out when its metadata is absent: no words, no summary, no usable sentence, or no labelled
    feature. A record whose features are labelled but absent gets "Features: " with nothing after it, as in the study.
    """
    unknown = [f for f in fields if f not in INSTRUCT_FIELDS]
    if unknown:
        raise ConfigError(f"fields {unknown} are not Instruct lines; use a subset of {INSTRUCT_FIELDS}")
    lines = []
    for field in INSTRUCT_FIELDS:
        if field not in fields:
            continue
        if field == "words" and record.words:
            lines.append("Words: " + ", ".join(record.words))
        elif field == "features" and (record.known_features or record.instruction_features is not None):
            lines.append("Features: " + ", ".join(feature_display_name(f) for f in record.prompt_features))
        elif field == "summary" and record.summary:
            lines.append("Summary: " + record.summary.replace("\n", " ").strip())
        elif field == "sentence":
            sentence = record.sentence if record.sentence is not None else pick_sentence(record.story, rng)
            if sentence:
                lines.append("Sentence: " + sentence)
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def format_instruct_prompt(
    record: StoryRecord, *, rng: np.random.Generator, fields: Sequence[str] = INSTRUCT_FIELDS
) -> str:
    """The instruction prefix up to and including "Story: " (the generation prompt of protocol §7.5)."""
    return "\n".join([*instruct_lines(record, rng=rng, fields=fields), "Story: "])


def format_instruct(
    record: StoryRecord, *, rng: np.random.Generator, fields: Sequence[str] = INSTRUCT_FIELDS
) -> str:
    """The full Instruct text: shuffled instruction lines, then "Story: <story>" last."""
    return (format_instruct_prompt(record, rng=rng, fields=fields) + record.story.strip()).strip()


def format_instruct_texts(
    records: Iterable[StoryRecord], *, seed: int = 0, fields: Sequence[str] = INSTRUCT_FIELDS
) -> list[str]:
    """Format many records with one Generator seeded by `seed` (same seed and order, same texts)."""
    rng = np.random.default_rng(seed)
    return [format_instruct(r, rng=rng, fields=fields) for r in records]


# ----------------------------------------------------------------------------------------------------------------
# Deletion protocols (protocol §7.3): each takes and returns a list of StoryRecord, so they compose.


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
