"""The pix2pix paper's ablation suites as one command: train, evaluate, tabulate, draw.

Usage:
  python -m tf_pix2pix.tools.experiments --suite=objectives --data_dir data/facades/tfrecords \\
      --direction BtoA --steps 3000 --output_dir experiments/facades
  python -m tf_pix2pix.tools.experiments --suite=all ... --inception_weights=inception_notop.h5

Suites (Isola et al. 2017):

* ``objectives`` (Table 1): ``L1`` (no discriminator), ``GAN`` (unconditional D, no L1),
  ``cGAN`` (no L1), ``L1+GAN`` (unconditional D), ``L1+cGAN`` (the full objective).
* ``generators`` (Table 2): ``encoder-decoder`` (the U-Net without skips) and ``U-Net``, both with
  L1+cGAN.
* ``patch_sizes`` (Table 3): PatchGANs of receptive field 1, 16, 70 and 286 (L1+cGAN).

Every configuration trains with the same seed and step budget into
``OUT/runs/<configuration key>`` (identical configurations of different suites, e.g. L1+cGAN =
U-Net = 70x70, train once); a rerun skips finished runs and resumes an interrupted one. Each is
evaluated on the test split (``--split``) as the reference's ``test.py`` does — every image
resized to ``crop_size`` — in both test-time modes (``eval`` and ``paper``), with L1, PSNR, SSIM,
given Inception weights FID and KID, and given a segmenter (``--segmenter``, see
``tf_pix2pix.metrics.fcn_score``) the paper's FCN-score, with the real photos' score beside it.
Written: ``results.csv`` (one row per configuration and mode), ``results.md`` (tables shaped like
the paper's) and ``<suite>.png`` (the same test images through every configuration, like the
paper's figures).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import time
from typing import Any

import numpy as np

from tf_pix2pix.cli import UserError, define_flags, from_flags, run_main
from tf_pix2pix import models
from tf_pix2pix.configuration import (DataConfig, ExperimentConfig, MetricsConfig, ModelConfig, option,
                               option_of)

# The paper's pix2pix ablations: each row's options (flag names) over the paper's setup.
MODEL = "pix2pix"
SUITES: dict[str, dict[str, dict[str, Any]]] = {
    "objectives": {
        "L1": {"lambda_gan": 0.0},
        "GAN": {"lambda_l1": 0.0, "no_condition_D": True},
        "cGAN": {"lambda_l1": 0.0},
        "L1+GAN": {"no_condition_D": True},
        "L1+cGAN": {},
    },
    "generators": {
        "encoder-decoder": {"netG": "encoder_decoder"},
        "U-Net": {},
    },
    "patch_sizes": {
        "1x1": {"netD": "pixel"},
        "16x16": {"netD": "n_layers", "n_layers_D": 1},
        "70x70": {},
        "286x286": {"netD": "n_layers", "n_layers_D": 5},
    },
}
MODES = ("eval", "paper")


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """The shared setup of every configuration of the suites (each field is a flag)."""

    data_dir: str = option(dataclasses.MISSING, "Paired TFRecords (build_tfrecords / download).")
    output_dir: str = option(dataclasses.MISSING, "Runs, results.csv, results.md, figures.")
    steps: int = option(dataclasses.MISSING, "Training steps of every configuration.")
    suite: str = option("all", "Which ablation suite: all or one of "
                               f"{', '.join(SUITES)}.")
    direction: str = option_of(DataConfig, "direction")
    crop_size: int = option(256, "256 (unet_256) or 128 (unet_128).")
    batch_size: int = option_of(DataConfig, "batch_size")
    seed: int = option_of(DataConfig, "seed")
    split: str = option("test", "Evaluation split.")
    max_examples: int = option(0, "Evaluate at most this many images; 0 = all.")
    figure_examples: int = option(4, "Test images in each suite's figure.")
    inception_weights: str = option_of(MetricsConfig, "inception_weights")
    segmenter: str = option_of(MetricsConfig, "segmenter")
    segmenter_input_size: str = option_of(MetricsConfig, "segmenter_input_size")
    fcn_labels: str = option_of(MetricsConfig, "fcn_labels")
    fcn_classes: str = option_of(MetricsConfig, "fcn_classes")
    ngf: int = option_of(ModelConfig, "ngf")
    ndf: int = option_of(ModelConfig, "ndf")
    progress: bool = option(True, "Training progress bars.")

    def __post_init__(self) -> None:
        if self.suite != "all" and self.suite not in SUITES:
            raise UserError(f"--suite={self.suite!r}: use all or one of {', '.join(SUITES)}")
        if self.steps <= 0:
            raise UserError(f"--steps={self.steps}: give a positive step budget")
        if self.crop_size not in (128, 256):
            raise UserError(f"--crop_size={self.crop_size}: the paper's generators take 256 "
                            "(unet_256) or 128 (unet_128)")

    @property
    def suites(self) -> list[str]:
        return list(SUITES) if self.suite == "all" else [self.suite]


def experiment_config(runner: RunnerConfig, overrides: dict[str, Any],
                      model_dir: str = "") -> ExperimentConfig:
    """The full configuration of one row: the paper's setup with the row's options
    (``models.resolve`` of pix2pix)."""
    options = {"netG": f"unet_{runner.crop_size}", **overrides}
    if options["netG"] == "encoder_decoder":
        options["netG"] = f"encoder_decoder_{runner.crop_size}"
    return models.resolve(
        MODEL, data_dir=runner.data_dir, direction=runner.direction,
        load_size=runner.crop_size * 286 // 256, crop_size=runner.crop_size,
        batch_size=runner.batch_size, seed=runner.seed, ngf=runner.ngf, ndf=runner.ndf,
        model_dir=model_dir, max_steps=runner.steps, n_epochs=100, n_epochs_decay=100,
        val_max_examples=0, save_every_steps=max(100, runner.steps // 10),
        summary_every_steps=50, image_every_steps=max(100, runner.steps), **options)


# Fields that change what is logged or kept, not what is trained.
_NOT_TRAINING = ("train.model_dir", "train.save_every_steps", "train.summary_every_steps",
                 "train.image_every_steps", "train.keep_checkpoints", "train.val_max_examples",
                 "train.test_mode", "runtime.lock_timeout")


def config_key(config: ExperimentConfig) -> str:
    """A short stable name for a configuration (model directory of its run): a digest of every
    field that affects training, data_dir and learning rate included, so that a rerun on other
    data or with other settings never reuses a run."""
    fields = {f"{section}.{name}": value for section, values in config.to_dict().items()
              if isinstance(values, dict) for name, value in values.items()}
    fields = {k: v for k, v in fields.items() if k not in _NOT_TRAINING}
    fields["data.data_dir"] = os.path.abspath(fields["data.data_dir"])
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    return f"{config.model.netG}-{config.model.netD}-{digest}"


def _test_images(runner: RunnerConfig, config: ExperimentConfig):
    """The test split as the reference's test.py sees it: resized to crop_size, no crop."""
    from tf_pix2pix import data as data_lib

    import tensorflow as tf

    data = dataclasses.replace(config.data, load_size=runner.crop_size, batch_size=1)
    inputs, targets, names = [], [], []
    try:
        for x, y, name in data_lib.build_dataset(data, runner.split, training=False,
                                                 with_filenames=True):
            inputs.append(x.numpy()[0])
            targets.append(y.numpy()[0])
            names.append(os.path.splitext(name.numpy()[0].decode())[0])
            if runner.max_examples and len(inputs) >= runner.max_examples:
                break
    except tf.errors.DataLossError as e:
        raise data_lib.corruption_error(runner.data_dir, runner.split, e,
                                        "the trained runs are kept") from None
    if not inputs:
        raise UserError(f"split {runner.split!r} of {runner.data_dir} is empty")
    return np.stack(inputs), np.stack(targets), names


class FCNSetup:
    """The FCN-score of the runner: the segmenter, and the label ids of the test images."""

    def __init__(self, runner: RunnerConfig):
        from tf_pix2pix import label_maps
        from tf_pix2pix.metrics import fcn_score

        try:
            label_maps.segmentation_classes(runner.fcn_classes)
        except ValueError as e:
            raise UserError(f"--fcn_classes: {e}") from None
        size = fcn_score.parse_input_size(runner.segmenter_input_size)
        segmenter = fcn_score.load_segmenter(runner.segmenter)
        self.make = lambda: fcn_score.FCNScorer(segmenter, runner.fcn_classes,  # noqa: E731
                                                size)
        self.source = fcn_score.label_source(runner.fcn_labels, runner.fcn_classes)
        if self.source is None:
            raise UserError("--segmenter needs --fcn_labels: a folder of label-id PNGs or "
                            "input_colours")
        self.labels: list[np.ndarray] = []

    def read_labels(self, names: list[str], inputs: np.ndarray) -> None:
        self.labels = [self.source(name, image) for name, image in zip(names, inputs)]

    def score(self, photos: np.ndarray) -> dict[str, float]:
        """``fcn_pixel_acc``, ``fcn_class_acc``, ``fcn_class_iou`` of ``photos``."""
        scorer = self.make()
        for ids, photo in zip(self.labels, photos):
            scorer.add(ids, photo)
        scores = scorer.summary()["fcn"]
        return {f"fcn_{k}": scores[k] for k in ("pixel_acc", "class_acc", "class_iou")}


def evaluate_run(model_dir: str, inputs: np.ndarray, targets: np.ndarray,
                 features=None, fcn: FCNSetup | None = None) -> dict[str, dict[str, Any]]:
    """Metrics of a trained run in each test-time mode (with ``fcn``, its FCN-score), and its
    outputs (for the figure)."""
    import tensorflow as tf

    from tf_pix2pix.metrics.scoring import IMAGE_METRICS, Scorer
    from tf_pix2pix.serving.predict import translator_from_model_dir

    results = {}
    for mode in MODES:
        translator = translator_from_model_dir(model_dir, mode)
        outputs = np.concatenate([translator(tf.constant(inputs[i:i + 1])).numpy()
                                  for i in range(len(inputs))])
        scorer = Scorer(IMAGE_METRICS + ("fid", "kid"), features)
        scorer.add(outputs, targets)
        row = scorer.summary()
        row.pop("fid_warning", None)
        row.pop("inception_images", None)
        if fcn is not None:
            row.update(fcn.score(outputs))
        results[mode] = {"metrics": row, "outputs": outputs}
    return results


FCN_COLUMNS = ("fcn_pixel_acc", "fcn_class_acc", "fcn_class_iou")


def _write_tables(runner: RunnerConfig, rows: list[dict[str, Any]],
                  real_fcn: dict[str, float] | None = None) -> str:
    columns = ["suite", "config", "mode", "l1", "psnr", "ssim", "fid", "kid", "kid_std",
               *FCN_COLUMNS, "count", "steps", "train_seconds", "run"]
    with open(os.path.join(runner.output_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    has_fid = any("fid" in r for r in rows)
    has_fcn = any("fcn_pixel_acc" in r for r in rows)
    fcn_cell = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"Test split `{runner.split}` of `{runner.data_dir}`, {rows[0]['count']} images "
             f"resized to {runner.crop_size}; {runner.steps} training steps per configuration, "
             f"seed {runner.seed}. L1 lower is better, PSNR and SSIM higher"
             + ("; FID and KID lower (Keras InceptionV3 features)." if has_fid else
                "; FID/KID not computed (no --inception_weights).")
             + (f" FCN-score (per-pixel acc., per-class acc., class IOU; higher is better) by "
                f"`{runner.segmenter}`; the real photos score "
                + ", ".join(fcn_cell(real_fcn[k]) for k in FCN_COLUMNS) + "." if has_fcn
                else "")]
    titles = {"objectives": "Objectives (paper Table 1)", "generators":
              "Generators (paper Table 2)", "patch_sizes": "Patch sizes (paper Table 3)"}
    for suite in runner.suites:
        lines += ["", f"### {titles[suite]}", ""]
        head = "| configuration | " + " | ".join(
            f"{metric} ({mode})" for mode in MODES for metric in
            (["L1", "PSNR", "SSIM"] + (["FID", "KID"] if has_fid else [])
             + (["FCN pixel", "FCN class", "FCN IOU"] if has_fcn else []))) + " |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for name in SUITES[suite]:
            cells = []
            for mode in MODES:
                r = next(r for r in rows if r["suite"] == suite and r["config"] == name
                         and r["mode"] == mode)
                cells += [f"{r['l1']:.4f}", f"{r['psnr']:.2f}", f"{r['ssim']:.4f}"]
                if has_fid:
                    cells += [f"{r['fid']:.1f}", f"{r['kid']:.4f}"]
                if has_fcn:
                    cells += [fcn_cell(r[k]) for k in FCN_COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    path = os.path.join(runner.output_dir, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _figure(runner: RunnerConfig, suite: str, inputs: np.ndarray, targets: np.ndarray,
            outputs: dict[str, np.ndarray]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(runner.figure_examples, len(inputs))
    columns = ["input", *outputs, "target"]
    fig, axes = plt.subplots(n, len(columns), figsize=(2 * len(columns), 2 * n), squeeze=False)
    show = lambda x: np.clip((x + 1) / 2, 0, 1).squeeze()  # noqa: E731
    for i in range(n):
        images = [inputs[i], *(o[i] for o in outputs.values()), targets[i]]
        for j, (title, image) in enumerate(zip(columns, images)):
            axes[i][j].imshow(show(image), cmap="gray" if image.shape[-1] == 1 else None)
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if i == 0:
                axes[i][j].set_title(title, fontsize=9)
    fig.tight_layout()
    path = os.path.join(runner.output_dir, f"{suite}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run(runner: RunnerConfig) -> dict[str, Any]:
    """Trains (or resumes, or skips) every configuration, evaluates, writes the results."""
    from tf_pix2pix.runtime.training import train

    os.makedirs(runner.output_dir, exist_ok=True)
    plan = [(suite, name, overrides) for suite in runner.suites
            for name, overrides in SUITES[suite].items()]
    keys = {}
    for suite, name, overrides in plan:
        keys[(suite, name)] = config_key(experiment_config(runner, overrides))
    unique = list(dict.fromkeys(keys.values()))
    features = None
    if runner.inception_weights:
        from tf_pix2pix.metrics.inception import InceptionFeatures

        features = InceptionFeatures(runner.inception_weights)
    fcn = FCNSetup(runner) if runner.segmenter else None
    inputs = targets = real_fcn = None
    evaluated: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for index, key in enumerate(unique):
        suite, name, overrides = next(p for p in plan if keys[(p[0], p[1])] == key)
        model_dir = os.path.join(runner.output_dir, "runs", key)
        config = experiment_config(runner, overrides, model_dir)
        done = time.perf_counter() - started
        eta = (f", about {done / index * (len(unique) - index) / 60:.0f} min left"
               if index else "")
        labels = ", ".join(f"{s}/{n}" for (s, n), k in keys.items() if k == key)
        print(f"[{index + 1}/{len(unique)}] {labels} ({key}){eta}", flush=True)
        t0 = time.perf_counter()
        train(config, progress=runner.progress)
        seconds[key] = time.perf_counter() - t0
        if inputs is None:
            inputs, targets, names = _test_images(runner, config)
            if fcn is not None:
                fcn.read_labels(names, inputs)
                real_fcn = fcn.score(targets)
        evaluated[key] = evaluate_run(model_dir, inputs, targets, features, fcn)
    rows = []
    for (suite, name), key in keys.items():
        for mode in MODES:
            rows.append({"suite": suite, "config": name, "mode": mode, "run": key,
                         "steps": runner.steps, "train_seconds": round(seconds[key], 1),
                         **evaluated[key][mode]["metrics"]})
    figures = [_figure(runner, suite, inputs, targets,
                       {name: evaluated[keys[(suite, name)]]["eval"]["outputs"]
                        for name in SUITES[suite]}) for suite in runner.suites]
    table = _write_tables(runner, rows, real_fcn)
    return {"rows": rows, "table": table, "figures": figures, "real_fcn": real_fcn}


def main(argv: list[str]) -> None:
    result = run(from_flags(RunnerConfig))
    with open(result["table"]) as table:
        print(table.read())
    print(f"wrote {result['table']}, results.csv and {', '.join(result['figures'])}")


def cli() -> None:
    define_flags(RunnerConfig)
    run_main(main)


if __name__ == "__main__":
    cli()
