"""Command-line parsing shared by every ftmech command: usage errors are one-line ``ConfigError``s."""

import argparse

from interp.errors import ConfigError


class ArgParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ConfigErrors (printed as one line, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")
