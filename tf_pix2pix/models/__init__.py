"""The models and the one resolution of a configuration.

Each model is one module of this package holding its options (a ``ModelConfig`` subclass, the
reference's per-model defaults as its field defaults), its presets and modes, its networks'
wiring and its train step, as one :class:`TranslationModel` subclass registered by name in
:mod:`tf_pix2pix.models.registry`. Built in: ``pix2pix``, ``cycle_gan``, ``cut``, ``pix2pix_hd``,
``segmenter`` (the FCN-score's segmenter); plugins add models through the entry-point group
``tf_pix2pix.models``.

:func:`resolve` is the one place defaults are merged, for the command line, the Python API, the
tools and the benchmarks alike, in this order (later wins):

1. the fields' defaults: the shared sections' (``config.DataConfig``, ``TrainConfig``,
   ``RuntimeConfig``) and the model's own section's (its reference defaults);
2. the model's ``reference_defaults``: values the reference gives shared options for this
   model (CUT's 200 + 200 epochs, pix2pixHD's 1024-wide images);
3. the model's mode (``modes``: CUT's ``cut_mode`` cut / fastcut), chosen by the options or the
   preset;
4. the preset (``presets``: ``demo``, ``reference``, ...);
5. the caller's options (on the command line: the flags given and a ``--flagfile``'s).
"""

from __future__ import annotations

from tf_pix2pix.models.base import (GeneratorSlot, TranslationModel, pad_multiple,
                                    restore_generator)
from tf_pix2pix.models.registry import ENTRY_POINT_GROUP, get, names, register
from tf_pix2pix.models.resolution import (architecture, architecture_differences,
                                          check_test_mode, config_from_dict, for_config,
                                          load_config, option_classes, resolve,
                                          resolved_options, validate, with_model_dir)
# The built-in models register themselves on import, in this order (pix2pix, the default, first).
from tf_pix2pix.models import pix2pix  # noqa: F401,I001
from tf_pix2pix.models import cycle_gan  # noqa: F401,I001
from tf_pix2pix.models import cut  # noqa: F401,I001
from tf_pix2pix.models import pix2pix_hd  # noqa: F401,I001
from tf_pix2pix.models import segmenter  # noqa: F401,I001

__all__ = ["GeneratorSlot", "TranslationModel", "ENTRY_POINT_GROUP", "register", "names", "get",
           "for_config", "resolve", "resolved_options", "option_classes", "validate",
           "config_from_dict", "load_config", "architecture", "architecture_differences",
           "with_model_dir", "check_test_mode", "restore_generator", "pad_multiple"]
