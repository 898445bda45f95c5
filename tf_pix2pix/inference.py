"""Running a trained generator: restoring it, the two test-time modes, any-size translation.

Training-time validation and sample grids, export, prediction and the experiment runner all run
generators through this module:

* :func:`check_test_mode` is the one check of a test-time mode against a model;
* :func:`mode_call` / :func:`generator_fn` are the one implementation of the modes: ``eval``
  (dropout off, batch-norm running statistics) and ``paper`` (the paper's test time: dropout on,
  each batch normalised by its own statistics, the stored statistics left unchanged);
* :func:`restore_generator` builds a generator of a training directory from its ``config.json``
  and restores its weights; :func:`padded_translate` runs it on images of any size.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.checkpointing import checkpoint_dir
from tf_pix2pix.config import TEST_MODES, ConfigError, ExperimentConfig, ModelConfig, load_config
from tf_pix2pix.networks.layers import frozen_statistics


def check_test_mode(test_mode: str, model: ModelConfig | None = None) -> None:
    """Refuses an unknown test-time mode, and ``paper`` mode for a generator in which it would
    change nothing (no dropout and no batch norm)."""
    if test_mode not in TEST_MODES:
        raise ConfigError(f"test_mode={test_mode!r} is not valid; choose one of "
                          f"{', '.join(TEST_MODES)}")
    if model is not None and test_mode == "paper" and not model.has_test_time_noise:
        raise ConfigError(
            f"test_mode=paper: this {model.model} generator has no dropout and no batch norm, "
            "so paper and eval modes compute the same function; use test_mode=eval")


def mode_call(generator: keras.Model, mode: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """``generator`` as a function of its input in the test-time mode ``mode``.

    ``eval``: dropout off, batch-norm running statistics (the usual inference).
    ``paper``: as in the paper's test time, dropout on and batch statistics of the batch itself;
    the stored statistics are left unchanged (``networks.layers.frozen_statistics``: traced
    functions hold no update), while dropout's seed advances so that successive calls draw new
    masks, as the paper's test-time noise intends.
    """
    check_test_mode(mode)
    if mode == "eval":
        return lambda x: generator(x, training=False)

    def paper(x):
        with frozen_statistics():
            return generator(x, training=True)

    return paper


def generator_fn(generator: keras.Model, mode: str):
    """:func:`mode_call` as a ``tf.function`` (retraced only for new input shapes)."""
    return tf.function(mode_call(generator, mode), reduce_retracing=True)


def pad_multiple(config: ExperimentConfig) -> int:
    """Height and width must be multiples of this for the generator to take them unpadded."""
    return models.for_config(config).pad_multiple(config)


def restore_generator(model_dir: str, checkpoint: str = "",
                      direction: str = "AtoB") -> tuple[keras.Model, ExperimentConfig, str]:
    """Builds a generator from ``model_dir/config.json`` and restores its weights.

    Args:
      model_dir: training directory.
      checkpoint: checkpoint prefix; empty for the latest.
      direction: ``AtoB`` (pix2pix's generator, CycleGAN's G_A) or ``BtoA`` (CycleGAN's G_B).

    Returns:
      ``(generator, config, checkpoint_path)``.

    Raises:
      ConfigError: no config or checkpoint, a checkpoint of another architecture, or a
        direction the model does not have.
    """
    config = load_config(model_dir)
    if config is not None and config.train.model_dir != model_dir:
        # Where the files are now (a copied or moved training directory): the model's files
        # beside its checkpoints (pix2pixHD's feature clusters) are read from here.
        config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                       model_dir=model_dir))
    if config is None:
        raise ConfigError(f"{model_dir}/config.json not found; is --model_dir a training "
                          "directory of run_train.py?")
    path = checkpoint or tf.train.latest_checkpoint(checkpoint_dir(model_dir))
    if not path:
        raise ConfigError(f"no checkpoint in {checkpoint_dir(model_dir)}; train first")
    if not tf.io.gfile.exists(path + ".index"):
        raise ConfigError(f"checkpoint {path} not found (no {path}.index)")
    slots = models.for_config(config).generator_slots(config)
    if direction not in slots:
        raise ConfigError(
            f"--direction={direction}: the {config.model.model} model in {model_dir} has "
            f"generators for {', '.join(slots)} only (trained {config.data.direction} on its "
            "data); use --direction=AtoB")
    models.for_config(config).check_inference(config)
    root = slots[direction].root
    generator = models.for_config(config).build_generator(config, direction)
    _check_shapes(generator, path, config, root)
    status = tf.train.Checkpoint(**{root: generator}).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    return generator, config, path


def checkpoint_variable_shapes(path: str, root: str) -> list[tuple[int, ...]]:
    """Shapes of every variable reachable from the checkpoint object ``root`` (e.g. generator).

    Walks the checkpoint's object graph rather than key names: a variable shared by two objects
    (a layer and the optimizer tracking it) is stored under only one of their names.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(path)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    shapes = reader.get_variable_to_shape_map()
    start = [c.node_id for c in graph.nodes[0].children if c.local_name == root]
    seen, stack, found = set(), list(start), []
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        found += [tuple(shapes[a.checkpoint_key]) for a in node.attributes
                  if a.name == "VARIABLE_VALUE" and a.checkpoint_key in shapes]
        stack += [c.node_id for c in node.children]
    return sorted(found)


def _check_shapes(generator: keras.Model, path: str, config: ExperimentConfig,
                  root: str) -> None:
    """Compares the checkpoint's generator variables with the model the config describes."""
    found = checkpoint_variable_shapes(path, root)
    expected = sorted(tuple(v.shape) for v in generator.variables
                      if "seed_generator" not in v.path)
    if expected != found:
        missing = [s for s in expected if s not in found][:3]
        extra = [s for s in found if s not in expected][:3]
        arch = (f"model={config.model.model} netG={config.model.netG} ngf={config.model.ngf} "
                f"norm={config.model.norm} input_nc={config.data.input_nc} "
                f"output_nc={config.data.output_nc}")
        raise ConfigError(
            f"checkpoint {path} does not match the architecture in config.json ({arch}): "
            f"{len(found)} generator variables saved, {len(expected)} expected; shapes only in "
            f"the model {missing}, only in the checkpoint {extra}")


def _reflect_pad_to(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Reflect-pads bottom/right up to (height, width); repeats when the pad exceeds the size."""

    def cond(x):
        return tf.logical_or(tf.shape(x)[1] < height, tf.shape(x)[2] < width)

    def body(x):
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        # REFLECT needs pad < size; a 1-pixel side can only be repeated (SYMMETRIC).
        ph = tf.minimum(height - h, tf.maximum(h - 1, 0))
        pw = tf.minimum(width - w, tf.maximum(w - 1, 0))
        paddings = [[0, 0], [0, ph], [0, pw], [0, 0]]
        return [tf.cond(tf.logical_and(h > 1, w > 1),
                       lambda: tf.pad(x, paddings, mode="REFLECT"),
                       lambda: tf.pad(x, [[0, 0], [0, tf.minimum(height - h, h)],
                                          [0, tf.minimum(width - w, w)], [0, 0]],
                                      mode="SYMMETRIC"))]

    shape = images.shape
    return tf.while_loop(cond, body, [images],
                         shape_invariants=[tf.TensorShape([shape[0], None, None, shape[3]])])[0]


def padded_translate(call: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor,
                     multiple: int) -> tf.Tensor:
    """Runs ``call`` (a generator in a test mode, :func:`mode_call`) on images of any size by
    reflect-padding them to multiples of ``multiple`` and cropping the output back."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    target_h = (h + multiple - 1) // multiple * multiple
    target_w = (w + multiple - 1) // multiple * multiple
    padded = _reflect_pad_to(images, target_h, target_w)
    return call(padded)[:, :h, :w, :]


