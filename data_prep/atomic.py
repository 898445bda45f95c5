"""All-or-nothing output folders for the data tools."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Callable, Iterator

from tf_pix2pix.errors import UserError


def check_output_dir(path: str, overwrite: bool, flag: str = "--output_dir",
                     sources: dict[str, str] | None = None,
                     owned: Callable[[str], bool] | None = None) -> str:
    """Returns the absolute path; refuses a non-empty folder unless ``overwrite``.

    Args:
      path: the output folder.
      overwrite: replace a non-empty one (it is replaced as a whole, atomically).
      flag: the flag named in errors.
      sources: ``{flag: folder}`` the tool reads; an output that is one of them, lies inside one
        or contains one is refused, since replacing it would delete the inputs.
      owned: for ``overwrite``, which entry names of an existing output this tool writes; an
        output holding anything else is refused (naming it), so ``overwrite`` only ever removes
        what the tool wrote.
    """
    out = os.path.abspath(path)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"{flag} {out} exists and is not a directory")
    real_out = os.path.realpath(out)
    for source_flag, source in (sources or {}).items():
        real_in = os.path.realpath(source)
        if (real_out == real_in or real_out.startswith(real_in + os.sep)
                or real_in.startswith(real_out + os.sep)):
            relation = ("is" if real_out == real_in else
                        "lies inside" if real_out.startswith(real_in + os.sep) else "contains")
            raise UserError(f"{flag} {out} {relation} {source_flag} {source}: writing it would "
                            f"replace the inputs; choose an {flag} outside {source_flag}")
    entries = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if entries and not overwrite:
        raise UserError(f"{flag} {out} is not empty; pass --overwrite to replace it")
    foreign = [e for e in entries if owned is not None and not owned(e)]
    if foreign:
        raise UserError(f"{flag} {out} holds {foreign[0]!r} (and {len(foreign) - 1} more), which "
                        f"this tool did not write; --overwrite only replaces this tool's own "
                        f"output: choose an empty or new {flag}")
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
