"""Errors the library raises on bad input; the CLI prints them as one line and exits with code 2."""


class FtmechError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(FtmechError, ValueError):
    """A config field is invalid; the message names the field and a valid value."""


class CheckpointError(FtmechError):
    """A checkpoint is missing, corrupted, or does not match the requested config."""


class DataError(FtmechError, ValueError):
    """Input data is malformed: tokens out of vocabulary, empty sets, wrong shapes."""


class OfflineError(FtmechError):
    """Something must be downloaded but there is no network (or HF_HUB_OFFLINE=1)."""


class TrainingError(FtmechError):
    """Training cannot go on (e.g. a NaN/inf loss); the last good checkpoint is kept."""
