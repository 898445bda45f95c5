"""All-or-nothing output folders for the data tools."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from typing import Callable, Iterator

from tf_pix2pix.errors import UserError
from tf_pix2pix.runtime.locking import ModelDirLock, process_alive


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
    if os.path.isdir(out) and os.path.ismount(out):
        raise UserError(f"{flag} {out} is a mount point; it cannot be replaced as a whole: "
                        f"choose a new folder inside it as {flag}")
    entries = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if entries and not overwrite:
        raise UserError(f"{flag} {out} is not empty; pass --overwrite to replace it")
    foreign = [e for e in entries if owned is not None and not owned(e)]
    if foreign:
        raise UserError(f"{flag} {out} holds {foreign[0]!r} (and {len(foreign) - 1} more), which "
                        f"this tool did not write; --overwrite only replaces this tool's own "
                        f"output: choose an empty or new {flag}")
    return out


def _remove_leftovers(parent: str, name: str) -> None:
    """Removes the ``.NAME.partial-PID`` folders that a killed run (``kill -9``, a power cut:
    no cleanup ran) left beside its output, when that process is gone."""
    pattern = re.compile(rf"\.{re.escape(name)}\.partial-([0-9]+)")
    for entry in os.listdir(parent):
        match = pattern.fullmatch(entry)
        if match and int(match[1]) != os.getpid() and not process_alive(int(match[1]), None):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            print(f"note: removed {os.path.join(parent, entry)}, the partial output of a run "
                  "that was killed", file=sys.stderr)


@contextlib.contextmanager
def atomic_output_dir(out: str, recheck: Callable[[], object] | None = None,
                      holder: str = "data tool", flag: str = "--output_dir") -> Iterator[str]:
    """Yields a temporary folder beside ``out`` that replaces ``out`` only on success.

    On any exception (including Ctrl-C) the temporary folder is removed and ``out`` is untouched,
    so a failed run never leaves partial output behind, nor the (empty) parent folders it
    created. One run at a time builds ``out``: a lock file ``.NAME.lock`` beside it (the
    trainers' lock: a live holder is refused with one line, a dead one's lock taken over), and
    ``recheck`` (the tool's :func:`check_output_dir`) runs again under it, so a second run
    started meanwhile does not replace the first one's output unasked. Partial folders of
    killed runs are removed.
    """
    parent = os.path.dirname(out)
    name = os.path.basename(out)
    created = []  # the folders above ``out`` this call creates, innermost first
    missing = parent
    while missing and not os.path.exists(missing):
        created.append(missing)
        missing = os.path.dirname(missing)
    os.makedirs(parent, exist_ok=True)
    lock = ModelDirLock(parent, filename=f".{name}.lock", holder=holder, flag=flag, locks=out)
    lock.acquire()
    workdir = os.path.join(parent, f".{name}.partial-{os.getpid()}")
    done = False
    try:
        if recheck is not None:
            recheck()
        _remove_leftovers(parent, name)
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        yield workdir
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(workdir, out)
        done = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        lock.release()
        if not done:  # leave no empty folder a failed run created
            for folder in created:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
