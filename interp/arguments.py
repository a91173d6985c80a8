"""Command-line parsing shared by every ftmech command: usage errors are one-line ``ConfigError``s."""

import argparse
from collections.abc import Callable

from interp.errors import ConfigError


class ArgParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ConfigErrors (printed as one line, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def comma_list(kind: type) -> Callable[[str], tuple]:
    """An argparse ``type`` reading comma-separated values of ``kind``, e.g. ``--prune-ks 0,1,2,5``."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part) for part in text.split(",") if part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None

    return parse
