import os

import pytest

from tf_pix2pix import hardware

AVX2 = {"avx", "avx2", "fma", "sse4_2"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}


@pytest.mark.parametrize("flags, cap, expected", [
    (AVX512 | {"avx512_bf16"}, "", "AVX-512"),
    (AVX512, "ALL", "AVX-512"),
    (AVX512, "AVX512_CORE_BF16", "AVX-512"),
    (AVX512, "avx10_1_512_amx", "AVX-512"),
    (AVX512, "AVX2", "AVX2"),  # oneDNN capped: the AVX2 class's kernels
    (AVX512, "AVX2_VNNI", "AVX2"),
    (AVX512, "SSE41", "other"),
    (AVX2, "", "AVX2"),
    (AVX2, "AVX512_CORE", "AVX2"),  # a cap cannot add instructions
    ({"sse4_2"}, "", "other"),
    (set(), "", "other"),
])
def test_cpu_class_reads_flags_and_the_onednn_cap(flags, cap, expected):
    assert hardware.cpu_class(flags, cap) == expected


def test_cpu_class_reads_the_environment_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert hardware.cpu_class(AVX512) == "AVX2"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert hardware.cpu_class(AVX512) == "AVX-512"


def test_bfloat16_without_native_support_is_warned_about():
    assert "about 10x slower" in hardware.precision_warning("mixed_bfloat16", AVX2, gpu=False)
    assert hardware.precision_warning("mixed_bfloat16", AVX2 | {"avx512_bf16"}, gpu=False) is None
    assert hardware.precision_warning("mixed_bfloat16", AVX2 | {"amx_bf16"}, gpu=False) is None
    assert hardware.precision_warning("mixed_bfloat16", AVX2, gpu=True) is None
    assert hardware.precision_warning("float32", AVX2, gpu=False) is None


def test_training_start_up_prints_the_bfloat16_warning(records_dir, tmp_path, monkeypatch,
                                                       capfd):
    from tf_pix2pix import models
    from tf_pix2pix.runtime.training import build_trainer

    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(AVX2))
    monkeypatch.setattr(hardware, "has_gpu", lambda: False)
    config = models.resolve("pix2pix", data_dir=records_dir, load_size=36, crop_size=32,
                            netG="unet_32", ngf=4, ndf=4, model_dir=str(tmp_path / "m"),
                            precision="mixed_bfloat16")
    build_trainer(config, progress=False)
    err = capfd.readouterr().err
    assert "warning: --precision=mixed_bfloat16 on a CPU without native bfloat16" in err
    assert "use --precision=float32" in err


def test_usable_cores_follow_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks on this OS")
    cores = os.sched_getaffinity(0)
    assert hardware.usable_cores() == len(cores)
    os.sched_setaffinity(0, {min(cores)})
    try:
        assert hardware.usable_cores() == 1
    finally:
        os.sched_setaffinity(0, cores)
