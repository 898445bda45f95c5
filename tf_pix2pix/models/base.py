"""The interface between a model and everything else, and the machinery models share.

A model is one module of this package holding its options (a ``config.ModelConfig`` subclass,
``Config``) and one :class:`TranslationModel` subclass, registered by name with
:func:`tf_pix2pix.models.register`. The training loop, the CLIs, export, prediction, the
experiment runner and the importer ask the model class (looked up from ``config.model.model``)
for everything that differs between models: its options and their defaults, its modes and
presets, its demo data, its input pipeline and split sizes, its exportable generators, its
sample columns, its dry-run report and the checks of its configuration. No code outside
``tf_pix2pix/models/`` compares a model's name.

Also here: the learning-rate schedule, optimizers, loss scaling, dropout seed states and the
distributed step every model's ``train_step`` uses.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, ClassVar, Iterator, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tf_pix2pix import data as data_lib
from tf_pix2pix import inference, label_maps, networks
from tf_pix2pix.configuration import ExperimentConfig, ModelConfig, checkpoint_dir
from tf_pix2pix.errors import ConfigError
from tf_pix2pix.image_io import decode
from tf_pix2pix.models import resolution
from tf_pix2pix.models.registry import register  # noqa: F401 (the models' decorator)
from tf_pix2pix.networks.patchgan import output_side, receptive_field
from tf_pix2pix.optim import FusedAdam
from tf_pix2pix.visualize import to_uint8


class GeneratorSlot(NamedTuple):
    """One exportable generator of a model: its name in the checkpoint (``generator``,
    ``G_A``, ...) and the channels it reads and writes."""

    root: str
    input_nc: int
    output_nc: int


class TranslationModel(abc.ABC):
    """One image-to-image translation model: its networks, optimizers and train step, and
    (as class methods) what the loop and the tools need to know before building it.

    Subclasses set the class attributes and implement the abstract methods; the class methods
    have defaults for paired data that a model overrides where it differs.

    Class attributes:
      name: the registry name (``--model``).
      Config: the model's options, a ``config.ModelConfig`` subclass whose field defaults are
        the reference's for this model (``modify_commandline_options``).
      reference_defaults: values of shared options (data, train, runtime sections) that the
        reference sets otherwise for this model, by flag name.
      modes: ``{option: {value: {flag name: default}}}``: an option of ``Config`` whose value
        changes other defaults (CUT's ``cut_mode``); ``models.resolve`` applies it after
        ``reference_defaults``.
      presets: ``{name: {flag name: value}}`` for ``--preset`` (``demo``: the small demo
        configuration, ``model_dir`` included), applied after the mode.
      demo_data: how the demo's synthetic set is made (``data_prep.demo.demo_data``):
        ``folder`` and ``make_synthetic``'s ``size``, ``unpaired``, ``labels``, ``width``.
      sample_columns: what the rows of the sample grids show, for the console.
      published_generators: ``{name: .pth URL}`` of the authors' published generators
        (``import_torch --url``).
      tfds_source: whether ``DataConfig.tfds_name`` can feed it.
      data_layout: the TFRecord layout it trains on: ``paired`` (aligned or paired records of
        input and target) or ``unaligned`` (two unrelated domains).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    reference_defaults: ClassVar[dict[str, Any]] = {}
    modes: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    demo_data: ClassVar[dict[str, Any]] = {"folder": "data/demo", "size": 128}
    sample_columns: ClassVar[str] = "input | output | target"
    published_generators: ClassVar[dict[str, str]] = {}
    tfds_source: ClassVar[bool] = False
    data_layout: ClassVar[str] = "paired"

    loss_names: tuple[str, ...]
    step: tf.Variable
    config: ExperimentConfig
    strategy: tf.distribute.Strategy

    # -- before the model exists: configuration, data, export slots ------------------------

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        """Raises ``ConfigError`` for combinations this model cannot train (called by
        ``models.validate``). This one refuses training crops too small for a PatchGAN
        ``netD`` to give any logits; models without one override it."""
        m = config.model
        if config.data.preprocess == "scale_width" or m.netD == "pixel":
            return
        if output_side(m.netD, m.n_layers_D, config.data.crop_size) < 1:
            raise ConfigError(
                f"crop_size={config.data.crop_size} is too small for netD={m.netD}: its output "
                "would be empty; raise crop_size or use fewer discriminator layers")

    @classmethod
    def has_test_time_noise(cls, config: ExperimentConfig) -> bool:
        """Whether ``paper`` test mode differs from ``eval``: dropout or batch statistics."""
        return not config.model.no_dropout or config.model.norm == "batch"

    @classmethod
    def check_inference(cls, config: ExperimentConfig) -> None:
        """Raises ``ConfigError`` when a trained generator of ``config`` (in
        ``config.train.model_dir``) lacks something besides its checkpoint to run (called when
        export and prediction restore it)."""

    @classmethod
    def saved_state_fields(cls, config: ExperimentConfig) -> dict[str, Any]:
        """Fields besides the networks' that shape this model's saved variables (must match
        on resume), as ``{"section.field": value}``."""
        return {}

    @classmethod
    def generator_slots(cls, config: ExperimentConfig) -> dict[str, GeneratorSlot]:
        """The exportable generators by direction (``AtoB`` always exists)."""
        return {"AtoB": GeneratorSlot("generator", config.data.input_nc, config.data.output_nc)}

    @classmethod
    def build_generator(cls, config: ExperimentConfig, direction: str = "AtoB",
                        sync_bn: bool = False) -> keras.Model:
        """A freshly initialised generator of the slot ``direction``, named as its slot (how
        training builds it, and how export and prediction rebuild it to restore it)."""
        slot = cls.generator_slots(config)[direction]
        return networks.build_generator(config.model, slot.input_nc, slot.output_nc, sync_bn,
                                        name=slot.root)

    @classmethod
    def generator_layout(cls, config: ExperimentConfig) -> networks.GeneratorLayout:
        """The reference module tree of the generators (``import_torch`` names weights by
        it)."""
        return networks.generator_layout(config.model)

    @classmethod
    def pad_multiple(cls, config: ExperimentConfig) -> int:
        """Image sides the generators take unpadded are multiples of this."""
        return 2 ** networks.num_downs(config.model.netG)

    @classmethod
    def build_input(cls, config: ExperimentConfig, split: str, training: bool,
                    skip_examples: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
        """The batches ``train_step`` and ``validate`` take: ``(input, target)`` for paired
        data, ``(real_A, real_B)`` (each domain shuffled and jittered on its own) for
        unaligned data."""
        build = (data_lib.build_unpaired_dataset if cls.data_layout == "unaligned"
                 else data_lib.build_dataset)
        return build(config.data, split, training, skip_examples=skip_examples,
                     batch_size=batch_size)

    @classmethod
    def split_size(cls, config: ExperimentConfig, split: str) -> int:
        """Examples in one epoch of ``split``; for unaligned data ``max(|A|, |B|)``, the
        reference's epoch, and 0 unless both domains have images."""
        if cls.data_layout == "unaligned":
            sizes = data_lib.domain_sizes(config.data, split)
            return max(sizes.values()) if min(sizes.values()) else 0
        return data_lib.num_examples(config.data.data_dir, split)

    @classmethod
    def validation_split(cls, config: ExperimentConfig) -> tuple[str, int]:
        """The held-out split scored during training and its size (0: none): ``val``; for
        unaligned data without one, the reference's ``test`` split."""
        size = cls.split_size(config, "val")
        if size or cls.data_layout != "unaligned":
            return "val", size
        return "test", cls.split_size(config, "test")

    @classmethod
    def encode_input(cls, config: ExperimentConfig, encoded: tf.Tensor, channels: int,
                     instance: tf.Tensor | None = None,
                     style: tf.Tensor | None = None) -> tf.Tensor:
        """One encoded input file (as a user hands it to export's ``serving_default`` or to
        ``run_predict``) to the generator's ``[H, W, channels]`` float32 input: the decoded
        image in [-1, 1]. ``instance``: an instance map, for models that read one; ``style``:
        a style number, for models that take one (``takes_style``)."""
        return data_lib.to_channels(decode(encoded, 3), channels) / 127.5 - 1.0

    @classmethod
    def show_input(cls, config: ExperimentConfig, inputs: tf.Tensor) -> tf.Tensor:
        """Generator inputs ``[N, H, W, C]`` as images in [-1, 1] to show (grids, galleries)."""
        return inputs

    @classmethod
    def show_output(cls, config: ExperimentConfig, outputs: tf.Tensor) -> tf.Tensor:
        """Generator outputs ``[N, H, W, C]`` as images in [-1, 1] to show (galleries)."""
        return outputs

    @classmethod
    def encode_output(cls, config: ExperimentConfig, output: tf.Tensor) -> tf.Tensor:
        """One generator output ``[H, W, C]`` as export's ``serving_default`` returns it: the
        PNG of the image."""
        return tf.io.encode_png(to_uint8(output))

    @classmethod
    def reads_instances(cls, config: ExperimentConfig) -> bool:
        """Whether ``encode_input`` takes an instance map (export then adds a signature with
        one)."""
        return False

    @classmethod
    def takes_style(cls, config: ExperimentConfig) -> bool:
        """Whether ``encode_input`` takes a style number (export then adds
        ``serve_with_style``)."""
        return False

    @classmethod
    def editor_info(cls, config: ExperimentConfig, direction: str = "AtoB") -> dict[str, Any]:
        """What the interactive editor (``tf_pix2pix.tools.editor``) needs to know about the
        input and output of the generator of ``direction``, written into the export's
        ``export_info.json`` (``editor``).

        Keys: ``input`` — ``rgb_labels`` (flat label colours: the editor paints with
        ``palette``, ``[[r, g, b], ...]``, and ``names``), ``label_ids`` (a grayscale map of class
        ids, painted in the ``palette`` colour of each id; ``instances``: whether an instance map
        goes with it; ``styles``: the number of styles ``serve_with_style`` chooses among) or
        ``image`` (photos, sketches: a free pen); ``output`` — ``image``, or ``class_ids`` (a
        grayscale map of classes, shown in ``output_palette``). This one decides between
        ``rgb_labels`` and ``image`` from the training inputs of ``config.data.data_dir``
        (:func:`label_maps.frequent_colours` of up to 16 of them; ``image`` when the data is
        gone)."""
        images = training_inputs(cls, config, direction)
        info: dict[str, Any] = {"input": "image", "output": "image",
                                "size": editor_size(config, images)}
        colours = label_maps.frequent_colours(to_uint8(np.stack(images)).numpy()) \
            if images else None
        if colours is not None:
            info.update(input="rgb_labels", palette=colours.tolist(),
                        names=[f"colour {i}" for i in range(len(colours))])
        return info

    @classmethod
    def dry_run(cls, config: ExperimentConfig) -> str:
        """Builds the model and reports its networks' parameter counts (and the receptive field
        of its discriminators) as one line."""
        model = cls(config, tf.distribute.get_strategy(), steps_per_epoch=1)
        line = " ".join(f"{name}_params={networks.count_params(network)}"
                        for name, network in model.networks().items())
        if model.has_discriminator:
            line += f" receptive_field={cls.receptive_field(config)}"
        return line

    @classmethod
    def receptive_field(cls, config: ExperimentConfig) -> str:
        """The side of the input patch each discriminator output sees, as the dry run prints
        it."""
        return str(receptive_field(config.model.netD, config.model.n_layers_D))

    # -- the built model --------------------------------------------------------------------

    @abc.abstractmethod
    def __init__(self, config: ExperimentConfig, strategy: tf.distribute.Strategy,
                 steps_per_epoch: int):
        """Builds networks and optimizers (call inside ``strategy.scope()``)."""

    @property
    def has_discriminator(self) -> bool:
        """Whether the model judges patches (the dry run then reports the receptive field)."""
        return True

    @abc.abstractmethod
    def networks(self) -> dict[str, keras.Model]:
        """Every network by name (parameter counts, per-layer switches of the benchmarks)."""

    @abc.abstractmethod
    def _replica_step(self, *batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """One replica's share of a training step on its part of the batch (``build_input``'s
        elements); returns the losses by ``loss_names``, each already averaged over the
        global batch."""

    def train_step(self, batch) -> dict[str, tf.Tensor]:
        """One (distributed) training step: :func:`distributed_step` of ``_replica_step``,
        traced on first use; returns the losses by ``loss_names``."""
        if self.__dict__.get("_step_fn") is None:
            self._step_fn = distributed_step(self.strategy, self._replica_step, self.step)
        return self._step_fn(batch)

    def generator_of(self, direction: str = "AtoB") -> keras.Model:
        """The built generator of the slot ``direction`` (``generator_slots``)."""
        root = self.generator_slots(self.config)[direction].root
        return self.checkpoint_objects()[root]

    def generate(self, images: tf.Tensor, mode: str = "eval",
                 direction: str = "AtoB") -> tf.Tensor:
        """Runs the generator of ``direction`` in a named test-time mode
        (``inference.generator_fn``, one traced function per mode and direction)."""
        functions = self.__dict__.setdefault("_generate_fns", {})
        if (mode, direction) not in functions:
            functions[(mode, direction)] = inference.generator_fn(self.generator_of(direction),
                                                                  mode)
        return functions[(mode, direction)](images)

    @abc.abstractmethod
    def checkpoint_objects(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides the step and the input position; the
        generators under their ``generator_slots`` roots."""

    def trainable_variables(self) -> list[tf.Variable]:
        """All trainable weights (checked for NaN/Inf before every save)."""
        return [v for network in self.networks().values() for v in network.trainable_variables]

    @abc.abstractmethod
    def current_lr(self) -> float:
        """The learning rate the next step trains with."""

    @abc.abstractmethod
    def sample_grids(self, batch, mode: str) -> dict[str, list[tf.Tensor]]:
        """Image columns to show for a batch: ``{tag: [column, ...]}`` of ``[N, H, W, C]``."""

    @abc.abstractmethod
    def validate(self, dataset: tf.data.Dataset, max_examples: int,
                 mode: str) -> dict[str, float]:
        """Metrics on a held-out dataset (``count`` included)."""


def training_inputs(model: type[TranslationModel], config: ExperimentConfig,
                    direction: str = "AtoB", count: int = 16) -> list[np.ndarray]:
    """Up to ``count`` generator inputs of the training split (of the generator of
    ``direction``: for unaligned data ``BtoA`` reads domain B), unjittered, in [-1, 1]; none
    when the data cannot be read (moved or deleted since training)."""
    side = 1 if direction == "BtoA" and model.data_layout == "unaligned" else 0
    try:
        batches = model.build_input(config, "train", training=False, batch_size=1)
        return [batch[side][0].numpy() for batch in batches.take(count)]
    except (tf.errors.OpError, ConfigError, OSError, ValueError):
        return []


def editor_size(config: ExperimentConfig, images: list[np.ndarray]) -> list[int]:
    """``[height, width]`` of the editor's canvas: the training inputs' size, else the crop."""
    if images:
        return list(images[0].shape[:2])
    return [config.data.crop_size, config.data.crop_size]


def make_optimizer(config: ExperimentConfig, steps_per_epoch: int, decay_shift: int = 1,
                   offset: int = 0) -> keras.optimizers.Optimizer:
    """Adam with the configured schedule (``decay_shift``, ``offset``: see
    :class:`LinearDecay`); dynamic loss scaling under ``mixed_float16``."""
    t = config.train
    opt = FusedAdam(learning_rate(config, steps_per_epoch, decay_shift, offset), beta_1=t.beta1,
                    beta_2=t.beta2, epsilon=1e-8)
    # float16 gradients underflow without dynamic loss scaling; bfloat16 does not need it.
    if config.runtime.precision == "mixed_float16":
        opt = keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def scaled(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
    """The loss as ``optimizer`` must differentiate it (scaled under float16 loss scaling).

    Call it inside the tape: the scaling must be differentiated too.
    """
    if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


def current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


def seed_states(*models: keras.Model) -> dict[str, tf.Variable]:
    """Dropout seed-generator states, which Keras layers do not put in checkpoints."""
    seeds = [v for m in models for v in m.non_trainable_variables if "seed_generator" in v.path]
    return {f"seed_{i}": v for i, v in enumerate(seeds)}


def distributed_step(strategy: tf.distribute.Strategy, replica_fn, step: tf.Variable):
    """A ``tf.function`` running ``replica_fn(*batch)`` on every replica, counting the step and
    summing the (already globally averaged) per-replica losses.

    Grappler's remapper is turned off (process-wide, before the step is traced): it fails on
    the discriminators' conv + bias + LeakyReLU gradient pattern ("remapper failed: ...
    Mutation::Apply error" at ERROR level), and with it on, a step traced after another model's
    two-replica step in the same process differed from one device's by far more than rounding
    (0.5 % of CUT's gradients). The step is as fast without it (BENCHMARKS.md, "grappler
    remapper off"). Every model's step is built here, by the trainer or directly.
    """
    tf.config.optimizer.set_experimental_options({"remapping": False})

    @tf.function
    def step_fn(batch):
        per_replica = strategy.run(replica_fn, args=batch)
        step.assign_add(1)
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    return step_fn


@keras.saving.register_keras_serializable(package="tf_pix2pix")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The reference's ``linear`` policy, per epoch, from the optimizer's step count.

    During epoch ``e`` (0-based) the rate is ``lr * (1 - max(0, e + shift - n_epochs) /
    (n_epochs_decay + shift))``: constant for ``n_epochs`` epochs, then falling linearly.
    ``shift`` 1 is junyanz/pytorch-CycleGAN-and-pix2pix's: the last epoch trains at ``lr /
    (n_epochs_decay + 1)``, not at exactly zero. ``shift`` 0 is NVIDIA/pix2pixHD's (the rate
    drops by ``lr / niter_decay`` after each epoch past ``niter``): epoch ``n_epochs`` still
    trains at ``lr``, the last at ``lr / n_epochs_decay``.

    ``offset``: training steps taken before the optimizer's first (an optimizer created in the
    middle of a run, as pix2pixHD's after ``niter_fix_global`` epochs, follows the run's epochs).
    """

    def __init__(self, lr: float, steps_per_epoch: int, n_epochs: int, n_epochs_decay: int,
                 shift: int = 1, offset: int = 0):
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch
        self.n_epochs = n_epochs
        self.n_epochs_decay = n_epochs_decay
        self.shift = shift
        self.offset = offset

    def __call__(self, step):
        epoch = (tf.cast(step, tf.float32) + float(self.offset)) // float(self.steps_per_epoch)
        decayed = (tf.maximum(0.0, epoch + float(self.shift) - self.n_epochs)
                   / float(max(self.n_epochs_decay + self.shift, 1)))
        return self.lr * tf.maximum(1.0 - decayed, 0.0)

    def get_config(self):
        return {"lr": self.lr, "steps_per_epoch": self.steps_per_epoch,
                "n_epochs": self.n_epochs, "n_epochs_decay": self.n_epochs_decay,
                "shift": self.shift, "offset": self.offset}


def learning_rate(config: ExperimentConfig, steps_per_epoch: int, decay_shift: int = 1,
                  offset: int = 0):
    """The schedule (or constant) named by ``train.lr_policy``."""
    t = config.train
    if t.lr_policy == "constant":
        return t.lr
    return LinearDecay(t.lr, steps_per_epoch, t.n_epochs, t.n_epochs_decay, decay_shift,
                       offset)


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Builds layers under the Keras dtype policy ``name``, then restores the previous one.

    Layers keep the policy they were built with, so no global state outlives the build.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# -- restoring a trained generator (export, prediction, pix2pixHD's --load_pretrain) -------

def pad_multiple(config: ExperimentConfig) -> int:
    """Height and width must be multiples of this for the generator to take them unpadded."""
    return resolution.for_config(config).pad_multiple(config)


def restore_generator(model_dir: str, checkpoint: str = "", direction: str = "AtoB",
                      flag: str = "--model_dir") -> tuple[keras.Model, ExperimentConfig, str]:
    """Builds a generator from ``model_dir/config.json`` and restores its weights.

    Args:
      model_dir: training directory.
      checkpoint: checkpoint prefix; empty for the latest.
      direction: ``AtoB`` (pix2pix's generator, CycleGAN's G_A) or ``BtoA`` (CycleGAN's G_B).
      flag: the flag that gave ``model_dir``, named in errors.

    Returns:
      ``(generator, config, checkpoint_path)``.

    Raises:
      ConfigError: no config or checkpoint, a checkpoint of another architecture, or a
        direction the model does not have.
    """
    config = resolution.load_config(model_dir)
    if config is not None and config.train.model_dir != model_dir:
        # Where the files are now (a copied or moved training directory): the model's files
        # beside its checkpoints (pix2pixHD's feature clusters) are read from here.
        config = resolution.with_model_dir(config, model_dir)
    if config is None:
        raise ConfigError(f"{model_dir}/config.json not found; is {flag} a training "
                          "directory of run_train.py?")
    path = checkpoint or tf.train.latest_checkpoint(checkpoint_dir(model_dir))
    if not path:
        raise ConfigError(f"no checkpoint in {checkpoint_dir(model_dir)}; train first")
    if not tf.io.gfile.exists(path + ".index"):
        raise ConfigError(f"checkpoint {path} not found (no {path}.index)")
    slots = resolution.for_config(config).generator_slots(config)
    if direction not in slots:
        raise ConfigError(
            f"--direction={direction}: the {config.model.model} model in {model_dir} has "
            f"generators for {', '.join(slots)} only (trained {config.data.direction} on its "
            "data); use --direction=AtoB")
    resolution.for_config(config).check_inference(config)
    root = slots[direction].root
    generator = resolution.for_config(config).build_generator(config, direction)
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
