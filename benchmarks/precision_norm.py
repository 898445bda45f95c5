"""Instance norm's error against float64 at growing image sizes: the fused batch-norm kernel used
before, this project's blocked moments (``networks.moments``), and PyTorch's ``InstanceNorm2d``
in float32 (the reference; in a subprocess, so the two runtimes do not share a process).

Usage:
  python benchmarks/precision_norm.py                  # the table of README's faithfulness notes
  python benchmarks/precision_norm.py --channels=16 --sizes=64x128,1024x2048

Inputs: ``random`` (16 planes of N(3, 0.5^2)) and ``label_like`` (a one-hot label map of 8
classes in rectangles through a random 3x3 convolution with bias: piecewise-constant planes, as
pix2pixHD's generator sees after its stem). Errors are the largest absolute difference of the
normalised output from float64.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["64x128", "256x256", "512x1024", "1024x2048"], "HxW sizes.")
flags.DEFINE_integer("channels", 16, "Planes per input.")
flags.DEFINE_string("torch_input", "", "Internal: compute PyTorch's errors on this .npy.")

_EPS = 1e-5


def _float64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    mean = x.mean((1, 2), keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean((1, 2), keepdims=True) + _EPS)


def _inputs(h: int, w: int, c: int) -> dict[str, np.ndarray]:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    labels = np.zeros((h, w), np.int32)
    for k in range(1, 8):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        labels[y0:y0 + rng.integers(h // 50 + 1, h // 3), x0:x0 + rng.integers(w // 50 + 1, w // 3)] = k
    kernel = rng.normal(0, 0.02, (3, 3, 8, c)).astype(np.float32)
    bias = rng.normal(0, 0.05, (c,)).astype(np.float32)
    label_like = (tf.nn.conv2d(tf.one_hot(labels[None], 8), kernel, 1, "SAME") + bias).numpy()
    random = (3.0 + 0.5 * rng.standard_normal((1, h, w, c))).astype(np.float32)
    return {"random": random, "label_like": label_like}


def _torch_error(path: str) -> float:
    import torch

    x = np.load(path)
    out = torch.nn.InstanceNorm2d(x.shape[-1])(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return float(np.abs(out.numpy().transpose(0, 2, 3, 1) - _float64(x)).max())


def main(argv):
    del argv
    if FLAGS.torch_input:
        print(json.dumps(_torch_error(FLAGS.torch_input)))
        return
    import tensorflow as tf

    from tf_pix2pix.networks import moments

    blocked = tf.function(lambda x: moments.normalize(x, _EPS)[0])

    @tf.function
    def fused(x):
        ones = tf.ones([x.shape[-1]])
        return tf.compat.v1.nn.fused_batch_norm(x, ones, 0 * ones, epsilon=_EPS,
                                                is_training=True)[0]

    print("| input | size | fused kernel (before) | blocked moments (now) | PyTorch float32 |")
    print("|---|---|---|---|---|")
    for size in FLAGS.sizes:
        h, w = (int(v) for v in size.split("x"))
        for kind, x in _inputs(h, w, FLAGS.channels).items():
            expected = _float64(x)
            errors = [np.abs(f(tf.constant(x)).numpy() - expected).max() for f in (fused, blocked)]
            path = f"/tmp/precision_norm_{os.getpid()}.npy"
            np.save(path, x)
            torch_error = json.loads(subprocess.run(
                [sys.executable, __file__, f"--torch_input={path}"], check=True,
                capture_output=True, text=True).stdout.strip().splitlines()[-1])
            os.remove(path)
            print(f"| {kind} | {h}x{w} | {errors[0]:.1e} | {errors[1]:.1e} | {torch_error:.1e} |",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
