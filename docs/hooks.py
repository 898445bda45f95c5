"""MkDocs hook: a model page's ``<!-- options: MODEL -->`` becomes the table of that model's
options with the defaults ``models.resolved_options`` gives them (what ``run_train.py
--model=MODEL --helpfull`` shows), so the docs state no default of their own.

Only the model's own section and the shared options whose default it changes are listed; the
shared sections' options are on the Training page's ``<!-- options: shared -->``.
"""

from __future__ import annotations

import dataclasses
import re

from tf_pix2pix import models
from tf_pix2pix.configuration import (DataConfig, RuntimeConfig, TrainConfig, default_options,
                                      option_name)

_MARK = re.compile(r"<!-- options: (\w+) -->")


def _row(field: dataclasses.Field, default) -> str:
    help_text = " ".join(field.metadata.get("help", "").split()).replace("|", "\\|")
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    return f"| `--{option_name(field)}` | `{shown}` | {help_text} |"


def _table(name: str) -> str:
    head = ["| flag | default | meaning |", "|---|---|---|"]
    if name == "shared":
        rows = [_row(f, default_options(k)[option_name(f)])
                for k in (DataConfig, TrainConfig, RuntimeConfig) for f in dataclasses.fields(k)
                if option_name(f) in default_options(k)]
        return "\n".join(head + rows)
    resolved = models.resolved_options(name)
    section = models.get(name).Config
    own = [_row(f, resolved[option_name(f)]) for f in dataclasses.fields(section)
           if option_name(f) != "model" and option_name(f) in resolved]
    changed = []
    for klass in (DataConfig, TrainConfig, RuntimeConfig):
        base = default_options(klass)
        changed += [_row(f, resolved[option_name(f)]) for f in dataclasses.fields(klass)
                    if option_name(f) in base and resolved[option_name(f)] != base[option_name(f)]]
    text = "\n".join(head + own)
    if changed:
        text += "\n\nShared options this model gives its own default:\n\n" + "\n".join(
            head + changed)
    return text


def on_page_markdown(markdown: str, **_) -> str:
    return _MARK.sub(lambda m: _table(m.group(1)), markdown)
