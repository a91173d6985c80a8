"""Output directories that are never clobbered: one writer at a time, and another run's results are replaced
only on request, and only once the new run is complete.

``claim_output(out, fingerprint)`` wraps a command's writing. It takes ``out/.ftmech.lock`` (pid and host;
a lock whose process no longer exists on this host is taken over, so a crash never leaves it stuck), then
reads ``out/ftmech_run.json``, the marker that records which run (its fingerprint: the command's settings)
the directory holds and whether it finished:

- empty or absent: the run starts;
- the same run, finished: ``Claim.done`` is true and the caller reports it as done without writing;
- the same run, unfinished: it continues with ``resume`` (sweeps, which reuse finished jobs, always continue);
- anything else: a ``ConfigError`` unless ``overwrite``, which moves the old contents to a sibling
  ``<out>.replaced-<pid>`` and deletes them once the new run is complete (or puts them back if it fails); one
  left by a killed run is named on stderr by the next claim of ``out``.
"""

import glob
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.atomic_files import atomic_write_text
from interp.errors import ConfigError

LOCK = ".ftmech.lock"
MARKER = "ftmech_run.json"


@dataclass
class Claim:
    """A claimed output directory; ``done``: it already holds this same finished run (write nothing).

    A caller whose run ended without raising but is not complete (a sweep with failed jobs) sets
    ``finished = False``: the marker stays unfinished, so the next invocation continues the run.
    """

    path: Path
    done: bool
    finished: bool = True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def acquire_lock(out: Path) -> Path:
    """Create ``out/.ftmech.lock`` for this process; a stale lock (dead pid on this host) is taken over."""
    lock = out / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
                pid, host = int(holder["pid"]), str(holder["host"])
            except FileNotFoundError:
                continue  # released meanwhile: try again
            except (ValueError, KeyError, TypeError):
                holder, pid, host = {}, -1, me["host"]  # a writer died between creating and filling it
            if host != me["host"]:
                raise ConfigError(
                    f"{out} is being written by pid {pid} on host {host} (since {holder.get('since')}); "
                    f"wait for it, or delete {lock} if that run is gone"
                ) from None
            if pid > 0 and _alive(pid):
                raise ConfigError(
                    f"{out} is being written by another ftmech process (pid {pid}, since "
                    f"{holder.get('since')}); wait for it to finish or choose another --out"
                ) from None
            stale = lock.with_name(f"{LOCK}.stale-{os.getpid()}")
            try:
                os.replace(lock, stale)  # only one of several racing processes moves a given lock
            except FileNotFoundError:
                continue
            stale.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        return lock


def _entries(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name != LOCK)


def _read_marker(out: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((out / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two fingerprints."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".") or "settings"]


def _write_marker(out: Path, fingerprint: Mapping[str, Any], status: str) -> None:
    record = {"status": status, "fingerprint": fingerprint, "pid": os.getpid(), "host": socket.gethostname()}
    atomic_write_text(out / MARKER, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _move(entries: list[Path], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        os.replace(entry, target / entry.name)


def _check(out: Path, fingerprint: Any, *, resume: bool, continues: bool, resumable: bool) -> bool:
    """Whether ``out`` already holds this finished run; ConfigError when it holds anything but this run."""
    entries = _entries(out)
    if not entries:
        return False
    marker = _read_marker(out)
    again = "pass --overwrite to replace it (removed once the new run is complete) or choose another --out"
    if marker is None:  # --resume too: it continues only a run that ftmech recorded here
        names = ", ".join(p.name for p in entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise ConfigError(f"{out} already holds files of another run ({names}); {again}")
    if marker.get("fingerprint") != fingerprint:
        changed = ", ".join(_differences(marker.get("fingerprint"), fingerprint)[:5])
        raise ConfigError(f"{out} holds a run with other settings (differs in: {changed}); {again}")
    if marker.get("status") == "done":
        return True
    if not (resume or continues):
        options = "pass --resume to continue it or --overwrite" if resumable else "pass --overwrite"
        raise ConfigError(
            f"{out} holds an unfinished run of this command (stopped or killed); {options} to start again"
        )
    return False


def _report_left_aside(out: Path) -> None:
    """Name on stderr each ``<out>.replaced-<pid>`` left by an ``--overwrite`` that was killed: it holds the run
    that was being replaced (a live overwrite would hold the lock just taken)."""
    for left in sorted(out.parent.glob(f"{glob.escape(out.name)}.replaced-*")):
        print(
            f"ftmech: note: {left} holds the run that an interrupted --overwrite of {out} moved aside; "
            f"move it back to {out} or delete it",
            file=sys.stderr,
        )


@contextmanager
def claim_output(
    out: str | Path,
    fingerprint: Mapping[str, Any],
    *,
    overwrite: bool = False,
    resume: bool = False,
    continues: bool = False,
    resumable: bool = True,
) -> Iterator[Claim]:
    """Hold ``out`` for one run with settings ``fingerprint`` (JSON-native); see the module docstring.

    ``continues``: an unfinished run of the same settings goes on without ``resume`` (content-addressed sweeps);
    ``resumable``: whether the command has ``--resume`` (the refusal of an unfinished run offers it only then).
    On success the marker says ``done``; on failure a fresh directory is left as it was found.
    """
    out = Path(out)
    fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    created = not out.exists()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create --out {out}: {exc.strerror or exc}; choose another --out") from None
    lock = acquire_lock(out)
    _report_left_aside(out)
    aside: Path | None = None
    try:
        if overwrite and _entries(out):
            aside = out.with_name(f"{out.name}.replaced-{os.getpid()}")
            _move(_entries(out), aside)
        done = _check(out, fingerprint, resume=resume, continues=continues, resumable=resumable)
        if not done:
            _write_marker(out, fingerprint, "running")
        claim = Claim(path=out, done=done)
        try:
            yield claim
        except BaseException:
            if aside is not None:  # the new run failed: the old contents come back
                for entry in _entries(out):
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                _move(_entries(aside), out)
                aside.rmdir()
                aside = None
            elif [p.name for p in _entries(out)] == [MARKER]:
                (out / MARKER).unlink()
            raise
        if not done and claim.finished:
            _write_marker(out, fingerprint, "done")
        if aside is not None:
            shutil.rmtree(aside)
    finally:
        lock.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
