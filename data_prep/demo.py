"""The demos' data: the synthetic set of ``make_synthetic`` and its TFRecords, made once.

``run_train.py --preset=demo`` and ``tf_pix2pix.train(preset="demo")`` call
:func:`with_demo_data`, which makes the set from the model's ``demo_data`` description (its
folder, image size and layout), so a model describes its demo set and the tools make it; the
models never write data.
"""

from __future__ import annotations

import os
from typing import Any

from data_prep.build_tfrecords import BuildConfig, build
from data_prep.make_synthetic import SyntheticConfig, make_synthetic
from tf_pix2pix import models
from tf_pix2pix.configuration import ExperimentConfig
from tf_pix2pix.data import MANIFEST
from tf_pix2pix.metrics.scoring import evaluate
from tf_pix2pix.serving import predict as predict_lib


def synthetic_demo_data(folder: str, size: int, unpaired: bool = False, labels: bool = False,
                        width: int = 0) -> str:
    """Generates the synthetic set (``data_prep.make_synthetic``) and its TFRecords once.

    Args:
      folder: holds ``images/`` and ``tfrecords/``.
      size: image side (height for ``labels``).
      unpaired: CycleGAN's layout (trainA/trainB/...), built unaligned.
      labels: pix2pixHD's layout (class ids, instance ids, photos), ``width`` wide.
      width: with ``labels``, the image width (0 = ``size``).

    Returns:
      The TFRecord folder.
    """
    images, records = os.path.join(folder, "images"), os.path.join(folder, "tfrecords")
    if not os.path.isfile(os.path.join(records, MANIFEST)):
        print(f"Generating the synthetic demo set in {images} ...")
        make_synthetic(SyntheticConfig(output_dir=images, size=size, unpaired=unpaired,
                                       labels=labels, width=width, overwrite=True))
        build(BuildConfig(input_dir=images, output_dir=records, overwrite=True, progress=False,
                          layout="labels" if labels else "unaligned" if unpaired else "aligned"))
    return records


def demo_data(spec: dict[str, Any], folder: str = "") -> str:
    """The TFRecords of a model's demo set (its ``demo_data``), made in ``folder`` (default
    the spec's own) if not there yet."""
    options = {k: v for k, v in spec.items() if k != "folder"}
    return synthetic_demo_data(folder or spec["folder"], **options)


def with_demo_data(config: ExperimentConfig, preset: str | None,
                   folder: str = "") -> ExperimentConfig:
    """``config`` reading its model's demo set (made in ``folder``, default the model's own, if
    not there yet) when ``preset`` is ``demo`` and no data source is given; else unchanged."""
    if preset != "demo" or config.data.data_dir or config.data.tfds_name:
        return config
    return config.replace(data_dir=demo_data(models.for_config(config).demo_data, folder))


def truth_scores(config: ExperimentConfig, folder: str = "") -> dict[str, float] | None:
    """For a model trained on its unpaired demo set (made in ``folder``, default the model's
    own): its A -> B translations of the validation label maps scored against their true
    renderings (``images/valAB``, which the synthetic generator writes and training never
    reads), ``{"l1", "psnr", "ssim", "count"}`` as for paired data; None for other data (or a
    demo set made before the pairs were written: delete it to have it made again)."""
    spec = models.for_config(config).demo_data
    root = folder or spec["folder"]
    pairs = os.path.join(root, "images", "valAB")
    if not spec.get("unpaired") or not os.path.isdir(pairs) or os.path.abspath(
            config.data.data_dir) != os.path.abspath(os.path.join(root, "tfrecords")):
        return None
    translator = predict_lib.translator_from_model_dir(config.train.model_dir,
                                                       config.train.test_mode)
    examples = predict_lib.iterate_examples("aligned", pairs, translator.config)
    return evaluate(translator, ((ex.input[None], ex.target[None]) for ex in examples))
