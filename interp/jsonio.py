"""The one JSON reader, writer and printer of ftmech's results and summaries.

Written JSON is strict: non-finite floats become ``null`` (never ``NaN``), keys are sorted, and files are
replaced atomically, so a reader never sees half a file.
"""

import json
import math
from pathlib import Path
from typing import Any

from interp.atomic_files import atomic_write_text
from interp.errors import DataError


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(payload: Any) -> str:
    """Pretty, sorted, strict JSON text of ``payload`` (objects JSON cannot hold are written as strings)."""
    return json.dumps(finite(payload), indent=2, sort_keys=True, default=str, allow_nan=False)


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` to ``path`` atomically."""
    atomic_write_text(Path(path), dumps(payload) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse the JSON file at ``path``; a missing or malformed file is a one-line ``DataError``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc})") from None


def print_json(payload: Any) -> None:
    """Print ``payload`` to stdout as the commands do: pretty, sorted, strict JSON."""
    print(dumps(payload))
