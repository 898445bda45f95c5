"""Clusters a pix2pixHD model's instance-wise features into styles per class (the reference's
``encode_features.py``), so that a user picks a style per object at test time.

Usage:
  python -m tf_pix2pix.tools.encode_features --model_dir runs/city_feat [--n_clusters 10]

For a model trained with ``--instance_feat``: the encoder runs on every photo of ``--split``
(no jitter, batch 1), its output averaged over each instance (``label_maps.instance_mean``); each
instance gives one feature vector and its area ratio ``pixels / (H * W // 32)``, filed under its
class (ids below 1000 are classes, ``1000 * class + k`` instances). Per class, the instances
with a ratio above 0.5 are clustered with scikit-learn's ``KMeans(n_clusters=min(count,
n_clusters), random_state=0, n_init=10)`` — the reference's call, with the ``n_init`` its
scikit-learn version defaulted to. The centres are written to
``<model_dir>/feature_clusters.json``, ordered by cluster size (style 0 is the most common);
export and prediction give every instance the centre of its class that ``style`` names
(``serve_with_style``; 0 otherwise).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from tf_pix2pix.cli import UserError, define_flags, from_flags, run_main
from tf_pix2pix.configuration import option, write_atomic

BLOCK_NUM = 32  # the reference's area unit: H * W // 32 pixels
MIN_AREA_RATIO = 0.5


@dataclasses.dataclass(frozen=True)
class EncodeConfig:
    """What to encode (each field is a flag of ``python -m tf_pix2pix.tools.encode_features``)."""

    model_dir: str = option(dataclasses.MISSING, "Training directory of a pix2pixHD model with "
                                                 "--instance_feat.")
    split: str = option("train", "Split whose photos give the features.")
    n_clusters: int = option(10, "Styles (k-means clusters) per class at most.")
    checkpoint: str = option("", "Checkpoint prefix; default: the latest.")

    def __post_init__(self) -> None:
        if self.n_clusters < 1:
            raise UserError(f"--n_clusters={self.n_clusters}: use 1 or more")


def instance_rows(features: np.ndarray, instances: np.ndarray) -> list[tuple[int, np.ndarray,
                                                                             float]]:
    """``(class, feature, area ratio)`` of every instance of one image: ``features`` ``[H, W,
    F]`` (already averaged over instances), ``instances`` ``[H, W]`` ids."""
    from tf_pix2pix.label_maps import instance_class

    h, w = instances.shape
    ids, first, counts = np.unique(instances.ravel(), return_index=True, return_counts=True)
    classes = np.asarray(instance_class(ids))
    flat = features.reshape(-1, features.shape[-1])
    return [(int(c), flat[f].astype(np.float64), float(n) / (h * w // BLOCK_NUM))
            for c, f, n in zip(classes, first, counts)]


def cluster(rows: list[tuple[np.ndarray, float]], n_clusters: int) -> np.ndarray:
    """The k-means centres of the features whose area ratio is above 0.5, largest cluster
    first (``[0, F]`` when none qualifies)."""
    from sklearn.cluster import KMeans

    kept = np.array([f for f, ratio in rows if ratio > MIN_AREA_RATIO])
    if not len(kept):
        return np.zeros([0, len(rows[0][0]) if rows else 0])
    kmeans = KMeans(n_clusters=min(len(kept), n_clusters), random_state=0, n_init=10).fit(kept)
    sizes = np.bincount(kmeans.labels_, minlength=len(kmeans.cluster_centers_))
    order = sorted(range(len(sizes)), key=lambda k: (-sizes[k], k))
    return kmeans.cluster_centers_[order]


def encode_features(config: EncodeConfig) -> dict:
    """Encodes ``config.split``'s photos, clusters the features per class, writes
    ``feature_clusters.json``; returns its content and path."""
    import tensorflow as tf

    from tf_pix2pix import data as data_lib
    from tf_pix2pix import label_maps
    from tf_pix2pix.runtime.checkpointing import checkpoint_dir
    from tf_pix2pix.models import for_config, load_config
    from tf_pix2pix.models.pix2pix_hd import FEATURE_CLUSTERS, feature_encoder

    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UserError("clustering needs scikit-learn: pip install scikit-learn (or the "
                        "package's [features] extra)") from None
    experiment = load_config(config.model_dir)
    if experiment is None:
        raise UserError(f"{config.model_dir}/config.json not found; pass a training directory")
    if not for_config(experiment).takes_style(experiment):
        raise UserError(f"--model_dir {config.model_dir} was trained without --instance_feat: "
                        "it has no feature encoder")
    path = config.checkpoint or tf.train.latest_checkpoint(checkpoint_dir(config.model_dir))
    if not path:
        raise UserError(f"no checkpoint in {checkpoint_dir(config.model_dir)}; train first")
    encoder = feature_encoder(experiment.model, experiment.data.output_nc)
    tf.train.Checkpoint(encoder=encoder).restore(path).expect_partial()

    @tf.function(reduce_retracing=True)
    def features(photo, instances):
        return label_maps.instance_mean(encoder(photo, training=False), instances)

    data = experiment.data
    rows: dict[int, list[tuple[np.ndarray, float]]] = {}
    images = 0
    dataset = data_lib.build_label_dataset(data, config.split, training=False, batch_size=1,
                                           with_instances=True)
    for _, photo, instances in dataset:
        feats = features(photo, instances).numpy()[0]
        for label, feat, ratio in instance_rows(feats, instances.numpy()[0, ..., 0]):
            rows.setdefault(label, []).append((feat, ratio))
        images += 1
    if not images:
        raise UserError(f"split {config.split!r} of {data.data_dir} is empty")
    centres = {label: cluster(r, config.n_clusters) for label, r in sorted(rows.items())}
    result = {"feat_num": experiment.model.feat_num, "n_clusters": config.n_clusters,
              "split": config.split, "images": images, "checkpoint": os.path.abspath(path),
              "instances": {str(k): len(v) for k, v in sorted(rows.items())},
              "classes": {str(k): c.tolist() for k, c in centres.items() if len(c)}}
    out = os.path.join(config.model_dir, FEATURE_CLUSTERS)
    write_atomic(out, json.dumps(result, indent=1))
    return {**result, "path": out}


def main(argv: list[str]) -> None:
    result = encode_features(from_flags(EncodeConfig))
    styles = {k: len(v) for k, v in result["classes"].items()}
    print(f"encoded {sum(result['instances'].values())} instances of {result['images']} "
          f"image(s); styles per class {styles}; wrote {result['path']}")


def run() -> None:
    define_flags(EncodeConfig)
    run_main(main)


if __name__ == "__main__":
    run()
