"""Shared helpers of the benchmark scripts: data to run on, timing, machine description."""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from typing import Callable

SHARED_FACADES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "facades")


def facades_records(cache_dir: str = "") -> str:
    """TFRecords of ../shared/data/facades (built once into a cache), else of a synthetic set."""
    from data_prep.build_tfrecords import BuildConfig, build

    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "tf_pix2pix_bench")
    out = os.path.join(cache_dir, "facades_tfr")
    if os.path.isfile(os.path.join(out, "manifest.json")):
        return out
    source = os.path.abspath(SHARED_FACADES)
    if not os.path.isdir(source):
        from data_prep.make_synthetic import SyntheticConfig, make_synthetic

        source = os.path.join(cache_dir, "synthetic256")
        make_synthetic(SyntheticConfig(output_dir=source, num_train=64, num_val=8, num_test=0,
                                       size=256, overwrite=True))
    build(BuildConfig(input_dir=source, output_dir=out, num_shards=4, overwrite=True,
                      progress=False))
    return out


def _synthetic_records(name: str, layout: str, cache_dir: str, num_shards: int = 0,
                       **synthetic) -> str:
    """TFRecords of a synthetic set (``make_synthetic`` with ``synthetic``, no val/test), built
    once into ``cache_dir/<name>_tfr``."""
    from data_prep.build_tfrecords import BuildConfig, build
    from data_prep.make_synthetic import SyntheticConfig, make_synthetic

    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "tf_pix2pix_bench")
    out = os.path.join(cache_dir, f"{name}_tfr")
    if os.path.isfile(os.path.join(out, "manifest.json")):
        return out
    source = os.path.join(cache_dir, name)
    make_synthetic(SyntheticConfig(output_dir=source, num_val=0, num_test=0, overwrite=True,
                                   **synthetic))
    build(BuildConfig(input_dir=source, output_dir=out, layout=layout, num_shards=num_shards,
                      overwrite=True, progress=False))
    return out


def unpaired_records(cache_dir: str = "", size: int = 256) -> str:
    """Unaligned TFRecords of a synthetic unpaired set (64 images per domain), built once."""
    return _synthetic_records(f"unpaired{size}", "unaligned", cache_dir, num_shards=2,
                              num_train=64, size=size, unpaired=True)


def label_records(height: int, cache_dir: str = "") -> str:
    """pix2pixHD's layout of the synthetic scenes (8 label/instance/photo triplets, ``2 *
    height`` wide), as TFRecords, built once."""
    return _synthetic_records(f"labels{height}", "labels", cache_dir, num_train=8, size=height,
                              width=2 * height, labels=True)


def random_vgg_weights() -> str:
    """A VGG19 "notop" weights file of random weights (the VGG loss costs what it costs with
    ImageNet's, which are not downloaded here)."""
    import keras

    path = os.path.join(scratch_dir("bench_vgg_"), "vgg19.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None).save_weights(path)
    return path


def scratch_dir(prefix: str) -> str:
    """A new temporary folder for one benchmark run, removed when the process exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median_s": statistics.median(times), "min_s": ordered[0], "max_s": ordered[-1],
            "p95_s": p95, "repeats": len(times)}


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import tensorflow as tf

    from tf_pix2pix.hardware import cpu_class, cpu_flags

    flags = cpu_flags()
    # ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN dispatch the kernels an AVX2 CPU gets (an emulation
    # of the AVX2 class on an AVX-512 machine; the CPU itself is unchanged): cpu_class counts it,
    # cpu_flags are the CPU's own.
    isa_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__,
            "python": platform.python_version(), "cpu_class": cpu_class(flags),
            "onednn_max_cpu_isa": isa_cap,
            "cpu_bf16": sorted(flags & {"avx512_bf16", "amx_bf16"})}


def report(result: dict[str, object], table: list[tuple[str, str]]) -> None:
    """Prints the readable table and then the JSON line."""
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"{key.ljust(width)}  {value}")
    print(json.dumps(result, sort_keys=True))


def parse_options(items: list[str]) -> dict:
    """``["name=value", ...]`` as a dict, values read as JSON where they parse (numbers,
    true/false), else as strings."""
    import json

    options = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options
