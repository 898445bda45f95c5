"""Shared command-line plumbing: flags generated from config fields, and user-caused errors
turned into one readable line.

The ``run_*.py`` scripts and the ``data_prep`` tools call :func:`run_main`; errors a user can cause
(``errors.UserError`` and its subclasses: bad paths, bad images, invalid flags, mismatched
checkpoints; and missing or unreadable files) are printed as ``error: ...`` on stderr with exit
code 1 and no traceback. Anything else is a bug and keeps its traceback. This module imports no
TensorFlow: a tool that fails early fails fast. Importing it holds back TensorFlow's start-up
banner (the lines its libraries print while loading, before any log level applies) for the
import that follows: the tools' output starts with their own first line
(``TF_CPP_MIN_LOG_LEVEL=0`` or ``1`` keeps the banner).

:func:`define_flags` defines one absl flag per field of config dataclasses (name, type, default,
choices and help from the field, see ``config.option``), and :func:`from_flags` builds the
dataclass back from the parsed flags, so no default or help text is written twice.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Any, Callable, TypeVar

# Quiet TensorFlow's C++ start-up banner before TensorFlow is imported by any CLI.
_USER_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Lines TensorFlow's libraries write to the process's stderr while they load, before their
# logging is set up (TF_CPP_MIN_LOG_LEVEL does not reach them): informational only.
_BANNER = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are "
                     r"written to STDERR|I\d{4} .*")


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's package import with file descriptor 2 sent to a temporary file, then
    writes back to stderr every line but the start-up banner (warnings and errors stay)."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def __getattr__(self, name: str) -> Any:  # the wrapped loader's resources etc.
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            failed = True
            try:
                self._loader.exec_module(module)
                failed = False
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                for line in sink.read().decode(errors="replace").splitlines(keepends=True):
                    if failed or not _BANNER.fullmatch(line.rstrip("\n")):
                        sys.stderr.write(line)
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, with :class:`_QuietLoader` around its loader."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


# Not when TensorFlow is loaded already, nor when the user asked for its INFO logs.
if "tensorflow" not in sys.modules and _USER_LOG_LEVEL not in ("0", "1"):
    sys.meta_path.insert(0, _QuietTensorFlowImport())

from absl import app, flags  # noqa: E402

from tf_pix2pix.configuration import option_name  # noqa: E402
from tf_pix2pix.errors import OS_USER_ERRORS, UserError  # noqa: E402,F401 (tools raise it)

# Flags that define_flags() defines belong to the module that calls it (run_train.py, ...), so
# that --help lists them as that command's own.
flags.disclaim_key_flags()

# Whether a progress bar redrawn in place (a terminal) has left its line open: an error printed
# then would continue the bar's line (set by ``runtime.progress``).
bar_line_open = False


def end_bar_line() -> None:
    """Ends the line a terminal's progress bar left open, so the next line is one of its own."""
    global bar_line_open
    if bar_line_open:
        bar_line_open = False
        sys.stdout.write("\n")
        sys.stdout.flush()


def run_main(main: Callable[[list[str]], int | None], positional: bool = False) -> None:
    """Runs ``main`` under ``absl.app.run`` with one-line errors for user mistakes.

    ``positional``: whether the tool takes arguments besides its flags (``main`` gets them in
    ``argv[1:]``); if not, any is refused with a one-line error before ``main`` runs.
    """

    def _wrapped(argv: list[str]) -> int | None:
        from absl import flags, logging

        # TensorFlow logs every checkpoint write at INFO; keep the console for progress.
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            if not positional and len(argv) > 1:
                raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
            return main(argv)
        except (UserError, *OS_USER_ERRORS) as e:
            end_bar_line()
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(_wrapped)


def writable_dir(path: str, flag: str) -> str:
    """Creates the folder ``path`` (given by ``flag``) if needed and checks that it is
    writable; returns its absolute path.

    Keras's ``get_file`` silently caches into ``/tmp/.keras`` when its ``cache_dir`` is missing
    or read-only; the tools call this first so that the user's folder is used or refused.
    """
    folder = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{flag} {folder} is a file, not a folder; pass a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {folder}: cannot create it ({e.strerror}); pass a folder you "
                        "can write") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder} is not writable; pass a folder you can write")
    return folder


T = TypeVar("T")


def define_flags(*classes: type, exclude: tuple[str, ...] = (), flag_values=None,
                 defaults: dict[str, Any] | None = None) -> None:
    """Defines one absl flag per field of the config ``classes``.

    The type comes from the default (str, int, float, bool, tuple of str = list flag); fields
    without a default become required flags; a field that several classes share is defined
    once. ``exclude`` names fields the caller defines itself; ``defaults`` (``{flag name:
    value}``, as ``models.resolved_options`` gives them) replaces the fields' own defaults.
    """
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    for klass in classes:
        for field in dataclasses.fields(klass):
            name = option_name(field)
            if field.name in exclude or name in fv:
                continue
            meta = field.metadata
            help_text = meta.get("help") or field.name
            default = None if field.default is dataclasses.MISSING else field.default
            kind = type(default) if default is not None else _annotation_type(klass, field)
            if defaults and name in defaults:
                default = (not defaults[name] if meta.get("inverted") else defaults[name])
            if meta.get("inverted"):
                flags.DEFINE_bool(name, not default, help_text, flag_values=fv)
            elif kind is bool:
                flags.DEFINE_bool(name, default, help_text, flag_values=fv)
            elif kind is int:
                flags.DEFINE_integer(name, default, help_text, flag_values=fv)
            elif kind is float:
                flags.DEFINE_float(name, default, help_text, flag_values=fv)
            elif kind is tuple:
                flags.DEFINE_list(name, None if default is None else list(default), help_text,
                                  flag_values=fv)
            elif meta.get("choices"):
                flags.DEFINE_enum(name, default, list(meta["choices"]), help_text,
                                  flag_values=fv)
            else:
                flags.DEFINE_string(name, default, help_text, flag_values=fv)
            if default is None:
                flags.mark_flag_as_required(name, flag_values=fv)


def _annotation_type(klass: type, field: dataclasses.Field) -> type:
    names = {"str": str, "int": int, "float": float, "bool": bool}
    annotation = field.type if isinstance(field.type, str) else field.type.__name__
    return tuple if annotation.startswith("tuple") else names.get(annotation, str)


def from_flags(klass: type[T], flag_values=None, **overrides: Any) -> T:
    """An instance of the config ``klass`` from the flags :func:`define_flags` defined."""
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    values = {}
    for field in dataclasses.fields(klass):
        if field.name in overrides:
            continue
        value = fv[option_name(field)].value
        if field.metadata.get("inverted"):
            value = not value
        elif isinstance(field.default, tuple) or (value is not None and isinstance(value, list)):
            value = tuple(value)
        values[field.name] = value
    return klass(**values, **overrides)
