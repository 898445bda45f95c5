"""The user-error family: every problem a user can cause and fix is a :class:`UserError`.

The command-line tools catch :class:`UserError` (and the operating system's file errors) and
print it as one line with exit code 1 (``cli.run_main``); anything else is a bug and keeps its
traceback. This module imports nothing of the package, so any layer can raise these errors
without importing the layers that define what failed.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; its message says what and how."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field and what to do."""


class DataError(UserError, ValueError):
    """The data on disk cannot be used; the message names the path and what to do."""


class CorruptDataError(DataError):
    """A TFRecord shard holds a corrupted or truncated record; the message names the shard, the
    byte offset and the remedies."""


class BadImageError(UserError, ValueError):
    """A file cannot be used as an image; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CheckpointWriteError(UserError, RuntimeError):
    """A checkpoint could not be written (no space, quota, read-only); the message names it, the
    space it needed and had, and the newest complete checkpoint to resume from."""


class TrainingDivergedError(UserError, RuntimeError):
    """A loss became NaN or Inf; the message names the step and the last good checkpoint."""


class WorkerLostError(UserError, RuntimeError):
    """Another worker of a multi-worker job stopped answering (killed, crashed, unreachable)."""


# Raised by the tools and caught by ``cli.run_main`` with the user's errors above: the files a
# user named that are missing or not theirs to read.
OS_USER_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError)
