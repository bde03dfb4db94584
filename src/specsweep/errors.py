"""Small exception types used inside specsweep.

Every one of them is turned into a single ``Error: ...`` line and an exit code
at the CLI boundary (``cli.main``); nothing below the CLI prints or exits.
"""


class SpecsweepError(Exception):
    """Base class: a failure the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class UsageError(SpecsweepError):
    """Bad input: flags, config files, paths. Exit code 2, like argparse."""

    exit_code = 2


class ConfigError(UsageError):
    """A sweep config that cannot be used as written."""


class ModelError(UsageError):
    """A model file that is missing, unreadable, not GGUF, or unfit for the requested drafting."""


class EngineError(SpecsweepError):
    """The llama.cpp engine cannot be found, built or lacks a feature."""


class EngineMissingError(EngineError, UsageError):
    """No engine binary where we looked, or one without the requested spec type."""


class ServerError(SpecsweepError):
    """A managed llama-server failed to start, died, or hung."""

    def __init__(self, message: str, hint: str | None = None, log_tail: str = "",
                 exit_code: int | None = None):
        super().__init__(message, hint)
        self.log_tail = log_tail
        self.process_exit_code = exit_code


class RequestError(SpecsweepError):
    """One request to a running server failed (timeout, HTTP error, bad response)."""


class StoreError(SpecsweepError):
    """The results database cannot be used (newer schema, locked, unwritable)."""

    exit_code = 2


class Interrupted(SpecsweepError):
    """The user asked us to stop (SIGINT/SIGTERM). Exit code 130 like a shell."""

    exit_code = 130
