"""Progress bars that read well on a terminal and in a log file.

Keras's ``Progbar`` redraws its line with carriage returns whenever it believes it writes to a
terminal, and it believes so on every POSIX system (``"posix" in sys.modules``), with ANSI
colours in either case: a training run whose output goes to a file (``nohup``, CI, a cluster's
job log) got a coloured redraw per step, most of a megabyte for a demo. :func:`progress_bar`
keeps Keras's bar on a terminal and, elsewhere, gives a :class:`LogLines` reporter: one plain
line (count, percentage, the values, rate, ETA) every ``LOG_EVERY_S`` seconds and at the end.
Keras has no plain mode, hence this small class with the bar's ``update`` interface.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import keras

from tf_pix2pix import cli

LOG_EVERY_S = 30.0


def writes_to_terminal() -> bool:
    """Whether standard output is a terminal (or a notebook, whose output redraws too)."""
    return (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) or "ipykernel" in sys.modules


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class LogLines:
    """``Progbar.update`` as plain lines: ``step 1200/2000 (60%) loss=0.0005 lr=0.0002 3.2
    step/s ETA 4m10s``, at most one every ``every_s`` seconds, and always the last one. Values
    are shown as last given (the losses of the step, as the training loop passes them)."""

    def __init__(self, target: int | None, unit_name: str = "step", every_s: float = LOG_EVERY_S):
        self.target, self.unit, self.every_s = target, unit_name, every_s
        self._start = self._last = time.monotonic()
        self._first: int | None = None
        self._done = False

    def update(self, current: int, values: list[tuple[str, Any]] | None = None,
               finalize: bool | None = None) -> None:
        now = time.monotonic()
        if self._first is None:  # the count a resumed run starts from: not part of the rate
            self._first, self._start = current, now
            return
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        if self._done or (not finalize and now - self._last < self.every_s):
            return
        self._last, self._done = now, finalize
        parts = [f"{self.unit} {current}" + (f"/{self.target} ({100 * current // self.target}%)"
                                             if self.target else "")]
        parts += [f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                  for name, value in values or []]
        rate = (current - self._first) / max(now - self._start, 1e-9)
        if current > self._first:
            parts.append(f"{rate:.3g} {self.unit}/s")
            if self.target and not finalize and rate > 0:
                parts.append(f"ETA {_duration((self.target - current) / rate)}")
            elif finalize:
                parts.append(f"in {_duration(now - self._start)}")
        print(" ".join(parts), flush=True)


class TerminalBar(keras.utils.Progbar):
    """Keras's bar, recording whether it left its line open (``cli.end_bar_line`` ends it
    before an error or a result is printed)."""

    def update(self, current: int, values: list[tuple[str, Any]] | None = None,
               finalize: bool | None = None) -> None:
        super().update(current, values, finalize)
        done = finalize or (finalize is None and self.target is not None
                            and current >= self.target)
        cli.bar_line_open = self.verbose == 1 and not done


def progress_bar(target: int | None, unit_name: str = "step", enabled: bool = True,
                 stateful_metrics: list[str] | None = None,
                 log_every_s: float = LOG_EVERY_S) -> keras.utils.Progbar | LogLines:
    """A progress reporter of ``target`` units (None: unknown) with ``update(current, values,
    finalize)``, silent unless ``enabled``: Keras's bar on a terminal, :class:`LogLines`
    elsewhere."""
    if enabled and not writes_to_terminal():
        return LogLines(target, unit_name, log_every_s)
    return TerminalBar(target, verbose=1 if enabled else 0, unit_name=unit_name,
                       stateful_metrics=stateful_metrics)
