"""Loading TinyStories: local JSON/JSON-lines/text files, the shared plain-text sample, and the Hugging Face hub.

The hub loader downloads `TinyStories_all_data.tar.gz` (over 1 GB) into the Hugging Face cache once and
extracts its 50 `data*.json` shards to `$FTMECH_DATA_DIR/tinystories/` (default `~/.cache/ftmech/`); later calls read
the shards and never touch the network. Without the shards and without network it raises OfflineError at once.
`load_local_hub_stories` reads an existing local copy of the shards only (the study's ``hub`` setting): no
download, no network.
"""

import json
import os
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from interp.errors import ConfigError, DataError, OfflineError
from procedural_tasks.story_records import FEATURES, StoryRecord, normalize_feature

HUB_REPO_ID = "roneneldan/TinyStories"
HUB_ARCHIVE = "TinyStories_all_data.tar.gz"
PRETRAIN_SHARD_FRACTION = 0.8
TEXT_SEPARATOR = "<|endoftext|>"
SAMPLE_DIR_ENV = "FTMECH_TINYSTORIES_DIR"
DATA_DIR_ENV = "FTMECH_DATA_DIR"
OFFLINE_HINT = (
    "use --setting synthetic, or --setting hub --data-dir DIR with the extracted TinyStories_all_data "
    "data*.json shards in DIR"
)

_TERMINAL = re.compile(r"[.!?][\"”»’']?\s*$")


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
                f"{path} has no .json, .jsonl or .txt story files; give a folder of TinyStories files"
            )
        return [r for f in files for r in load_local_stories(f, source=source)]
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a TinyStories file or folder")
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


def load_local_hub_stories(data_dir: str | Path, *, limit: int) -> list[StoryRecord]:
    """The first ``limit`` labelled records of a local copy of `TinyStories_all_data` (its data*.json shards,
    read in order), never touching the network: the study's data for the ``hub`` setting.

    Records without instruction features carry no labels and are skipped. A folder without shards is a one-line
    DataError that says where the shards come from.
    """
    folder = Path(data_dir)
    shards = hub_shard_paths(folder)
    if not shards:
        raise DataError(
            f"{folder} holds no TinyStories data*.json shards; extract {HUB_ARCHIVE} from the hub dataset "
            f"{HUB_REPO_ID} into it, or use --setting synthetic"
        )
    records: list[StoryRecord] = []
    for shard in shards:
        records += [r for r in load_json_records(shard, source="hub") if r.known_features == FEATURES]
        if len(records) >= limit:
            break
    return records[:limit]
