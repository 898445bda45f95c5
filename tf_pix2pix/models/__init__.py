"""The model registry: one module per model, each registering a ``TranslationModel`` subclass.

Built in: ``pix2pix``, ``cycle_gan``, ``cut``, ``pix2pix_hd``, ``segmenter`` (the FCN-score's
segmenter). Other packages add models
without changing this one by declaring an entry point in the group ``tf_pix2pix.models``
(``name = package.module``) whose module registers its class with :func:`register`; they are
loaded on the first lookup.
"""

from __future__ import annotations

from importlib import metadata

from tf_pix2pix.config import ConfigError, ExperimentConfig
# The built-in models register themselves on import, in this order (pix2pix, the default, first).
from tf_pix2pix.models import pix2pix  # noqa: F401,I001
from tf_pix2pix.models import cycle_gan  # noqa: F401,I001
from tf_pix2pix.models import cut  # noqa: F401,I001
from tf_pix2pix.models import pix2pix_hd  # noqa: F401,I001
from tf_pix2pix.models import segmenter  # noqa: F401,I001
from tf_pix2pix.models.base import GeneratorSlot, TranslationModel, register, registered

ENTRY_POINT_GROUP = "tf_pix2pix.models"
__all__ = ["GeneratorSlot", "TranslationModel", "register", "names", "get", "for_config"]

_plugins_loaded = False


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
    return list(registered())


def get(name: str) -> type[TranslationModel]:
    """The model class registered as ``name``.

    Raises:
      ConfigError: no model of that name.
    """
    _load_plugins()
    models = registered()
    if name not in models:
        raise ConfigError(f"model={name!r} is not valid; choose one of {', '.join(models)}")
    return models[name]


def for_config(config: ExperimentConfig) -> type[TranslationModel]:
    """The model class of a configuration."""
    return get(config.model.model)
