"""Command-line parsing shared by every ftmech command: usage errors are one-line ``ConfigError``s, and every
count, fraction and path flag is checked by one ``type=`` validator of this module before any work starts.

argparse names the flag in front of a validator's message (``argument --n: must be an integer >= 1, got
'0'``), so the messages here say only what is wrong with the value.
"""

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from interp.config import SEED_LIMIT
from interp.errors import ConfigError


class ArgParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ConfigErrors (printed as one line, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count that must be at least 1 (``--n``, ``--steps``, ``--batch-size``, ``--workers`` ...)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer that may be 0 (K values of a pruning curve, counts)."""
    return _integer(text, 0)


def random_seed(text: str) -> int:
    """A seed in [0, 2^32): torch and numpy take it, and so do the offsets added to it for each data stream."""
    value = _integer(text, 0)
    if value >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2^32), got {text!r}")
    return value


def ray_address(text: str) -> str:
    """A Ray cluster to join: ``auto`` (the one started on this machine), ``HOST:PORT`` or ``ray://HOST:PORT``
    (Ray Client)."""
    if text != "auto" and ray_host_port(text) is None:
        raise argparse.ArgumentTypeError(f"must be auto, HOST:PORT or ray://HOST:PORT, got {text!r}")
    return text


def ray_host_port(address: str) -> tuple[str, int] | None:
    """The host and port of a ``HOST:PORT`` or ``ray://HOST:PORT`` Ray address; None for any other text."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return host.strip("[]"), int(port)
    return None


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, speed-up factors)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (noise scales)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A fraction in [0, 1] (``--c-te``, ``--c-tr``, thresholds); NaN and infinities are refused."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text!r}")
    return value


def output_dir(text: str) -> str:
    """A directory to write (``--out``): an empty name would write into the working directory unguarded."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory, got an empty string")
    return text


def existing_dir(text: str) -> str:
    """A directory that exists (a checkpoint or a run to read)."""
    if not Path(text).is_dir():
        what = "is not a directory" if Path(text).exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return text


def existing_file(text: str) -> str:
    """A file that exists (a config to load)."""
    if not Path(text).is_file():
        what = "is not a file" if Path(text).exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return text


def comma_list(kind: Callable[[str], object]) -> Callable[[str], tuple]:
    """An argparse ``type`` reading comma-separated values, each checked by ``kind`` (e.g. ``non_negative_int``
    for ``--prune-ks 0,1,2,5``)."""

    def parse(text: str) -> tuple:
        values = []
        for part in (p for p in text.split(",") if p):
            try:
                values.append(kind(part))
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise argparse.ArgumentTypeError(f"in {text!r}: {exc}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
        return tuple(values)

    parse.__name__ = f"comma_list({getattr(kind, '__name__', kind)})"
    return parse


def output_flags(
    p: argparse.ArgumentParser,
    *,
    required: bool = True,
    default: str | None = None,
    resumable: bool = False,
    runner_claims: bool = False,
    help: str = "output directory",
) -> None:
    """``--out``, ``--overwrite`` and (for resumable runs) ``--resume``: the flags of ``interp.run_dirs``.

    The ``ftmech`` dispatcher claims ``--out`` around the command (``claim_output=True``) unless the command's
    runner claims it itself (``runner_claims``: the studies, whose runners are also called directly).
    """
    p.add_argument(
        "--out", type=output_dir, required=required and default is None, default=default, help=help
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what --out holds; the old contents are removed only once the new run is complete",
    )
    if resumable:
        p.add_argument("--resume", action="store_true", help="continue the unfinished run in --out")
    if not runner_claims:
        p.set_defaults(claim_output=True)


def sweep_flags(p: argparse.ArgumentParser, *, default_out: str, what: str = "study") -> None:
    """The flags of a command that runs a content-addressed sweep (a study or the audit benchmark): its
    directory (claimed by the runner itself, resumable), the number of one-thread worker processes, the GPU
    fraction per job, and the plan (``interp.sweep_plan``) printed instead of running."""
    output_flags(
        p,
        default=default_out,
        resumable=True,
        runner_claims=True,
        help=f"{what} directory (re-runs reuse finished jobs)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=2, help="parallel worker processes (one torch thread each)"
    )
    p.add_argument(
        "--gpus-per-job",
        type=positive_float,
        help="pack jobs on GPUs: each takes this fraction (0, 1] of one, so floor(1/f) run per GPU",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the jobs per stage and the projected wall time; run nothing",
    )
    p.add_argument(
        "--ms-per-step",
        type=positive_float,
        help="the plan's per-job step time in ms at this packing (default: measured on finished jobs)",
    )
