"""Shared command-line plumbing: turn user-caused errors into one readable line.

The ``run_*.py`` scripts and the ``data_prep`` tools call :func:`run_main`; errors a user can cause
(bad paths, bad images, invalid flags, mismatched checkpoints) are printed as ``error: ...`` on
stderr with exit code 1 and no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

# Quiet TensorFlow's C++ start-up banner before TensorFlow is imported by any CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402


class UserError(Exception):
    """A problem the user can fix; its message says what and how."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from tf_pix2pix.config import ConfigError
    from tf_pix2pix.data import DataError
    from tf_pix2pix.image_io import BadImageError
    from tf_pix2pix.train_lib import TrainingDivergedError, WorkerLostError
    return (UserError, ConfigError, DataError, BadImageError, TrainingDivergedError,
            WorkerLostError,
            FileNotFoundError,
            NotADirectoryError, PermissionError)


def run_main(main: Callable[[list[str]], int | None]) -> None:
    """Runs ``main`` under ``absl.app.run`` with one-line errors for user mistakes."""

    def _wrapped(argv: list[str]) -> int | None:
        from absl import flags, logging

        # TensorFlow logs every checkpoint write at INFO; keep the console for progress.
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except user_error_types() as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(_wrapped)
