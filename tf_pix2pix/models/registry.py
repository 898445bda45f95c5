"""The model registry: names to model classes; imports nothing of the package but its errors.

Built-in models register themselves when ``tf_pix2pix.models`` imports them; other packages add
models without changing this one by declaring an entry point in the group ``tf_pix2pix.models``
(``name = package.module``) whose module registers its class with :func:`register`; they are
loaded on the first lookup.
"""

from __future__ import annotations

from importlib import metadata
from typing import TypeVar

from tf_pix2pix.errors import ConfigError

ENTRY_POINT_GROUP = "tf_pix2pix.models"

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}
_plugins_loaded = False


def register(cls: T) -> T:
    """Class decorator: makes the model class ``cls`` available as ``--model=<cls.name>``."""
    if not getattr(cls, "name", ""):
        raise ValueError(f"{cls.__name__} has no name")
    if _REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"model name {cls.name!r} is already registered by "
                         f"{_REGISTRY[cls.name].__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as e:  # a broken plugin must not take the built-in models down
            raise ConfigError(f"model plugin {entry.name} ({entry.value}) failed to load: "
                              f"{type(e).__name__}: {e}") from e


def names() -> list[str]:
    """Names of the registered models, built-in first."""
    _load_plugins()
    return list(_REGISTRY)


def get(name: str) -> type:
    """The model class registered as ``name``.

    Raises:
      ConfigError: no model of that name.
    """
    _load_plugins()
    if name not in _REGISTRY:
        raise ConfigError(f"model={name!r} is not valid; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
