"""All-or-nothing output folders for the data tools."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

from tf_pix2pix.errors import UserError


def check_output_dir(path: str, overwrite: bool, flag: str = "--output_dir") -> str:
    """Returns the absolute path; refuses a non-empty folder unless ``overwrite``."""
    out = os.path.abspath(path)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"{flag} {out} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise UserError(f"{flag} {out} is not empty; pass --overwrite to replace it")
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str) -> Iterator[str]:
    """Yields a temporary folder beside ``out`` that replaces ``out`` only on success.

    On any exception (including Ctrl-C) the temporary folder is removed and ``out`` is untouched,
    so a failed run never leaves partial output behind, nor the (empty) parent folders it
    created.
    """
    parent = os.path.dirname(out)
    created = []  # the folders above ``out`` this call creates, innermost first
    missing = parent
    while missing and not os.path.exists(missing):
        created.append(missing)
        missing = os.path.dirname(missing)
    os.makedirs(parent, exist_ok=True)
    workdir = os.path.join(parent, f".{os.path.basename(out)}.partial-{os.getpid()}")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    done = False
    try:
        yield workdir
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(workdir, out)
        done = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not done:  # leave no empty folder a failed run created
            for folder in created:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
