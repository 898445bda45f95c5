"""Shared fixtures: small data sets the project makes itself, and two logical CPU devices."""

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs let tests run MirroredStrategy on this machine; must precede any TF op.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


# test_training.tiny_config's model, data shapes and seed as run_train.py flags, for the tests
# that start training processes.
TINY_FLAGS = ("--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--load_size", "36",
              "--crop_size", "32", "--batch_size", "2", "--seed", "3")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A|B JPEGs of the demo generator: 12 train, 4 val, 4 test, 64 px per side."""
    from data_prep.make_synthetic import SyntheticConfig, make_synthetic

    out = str(tmp_path_factory.mktemp("synthetic"))
    make_synthetic(SyntheticConfig(output_dir=out, num_train=12, num_val=4, num_test=4, size=64))
    return out


@pytest.fixture(scope="session")
def records_dir(synthetic_dir, tmp_path_factory):
    """TFRecords (two train shards) built from ``synthetic_dir``."""
    from data_prep.build_tfrecords import BuildConfig, build

    out = str(tmp_path_factory.mktemp("records") / "tfr")
    build(BuildConfig(input_dir=synthetic_dir, output_dir=out, num_shards=2, progress=False))
    return out


@pytest.fixture(scope="session")
def unpaired_images_dir(tmp_path_factory):
    """CycleGAN layout of the demo generator: trainA/B 6 images, valA/B 2, testA/B 2, 32 px."""
    from data_prep.make_synthetic import SyntheticConfig, make_synthetic

    out = str(tmp_path_factory.mktemp("unpaired"))
    make_synthetic(SyntheticConfig(output_dir=out, num_train=6, num_val=2, num_test=2, size=32,
                                   unpaired=True))
    return out


@pytest.fixture(scope="session")
def unpaired_records_dir(unpaired_images_dir, tmp_path_factory):
    """Unaligned TFRecords built from ``unpaired_images_dir``."""
    from data_prep.build_tfrecords import BuildConfig, build

    out = str(tmp_path_factory.mktemp("unpaired_records") / "tfr")
    build(BuildConfig(input_dir=unpaired_images_dir, output_dir=out, layout="unaligned",
                      progress=False))
    return out


@pytest.fixture(scope="session")
def label_records(tmp_path_factory):
    """pix2pixHD's layout of the synthetic scenes (4 classes, instances), 64x32, as TFRecords."""
    from data_prep.build_tfrecords import BuildConfig, build
    from data_prep.make_synthetic import SyntheticConfig, make_synthetic

    root = tmp_path_factory.mktemp("hd")
    make_synthetic(SyntheticConfig(output_dir=str(root / "images"), num_train=6, num_val=2,
                                   num_test=2, size=32, width=64, labels=True))
    build(BuildConfig(input_dir=str(root / "images"), output_dir=str(root / "tfr"),
                      layout="labels", progress=False))
    return str(root / "tfr")



def event_tags(folder):
    """Every summary tag written to the TensorBoard event files in ``folder``."""
    tags = set()
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            tags.update(v.tag for v in event.summary.value)
    return tags


def write_image(path, pixels, fmt=None):
    """Encodes ``pixels`` (uint8 or uint16 HWC numpy) as PNG or JPEG by extension."""
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    if fmt == "png":
        data = tf.io.encode_png(pixels).numpy()
    else:
        data = tf.io.encode_jpeg(pixels, quality=95).numpy()
    with open(path, "wb") as f:
        f.write(data)
    return data


def random_image(h, w, c=3, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    top = 65535 if dtype == np.uint16 else 255
    return rng.integers(0, top, (h, w, c)).astype(dtype)


def png_header_only(width, height):
    """A PNG that declares ``width`` x ``height`` RGB pixels and holds none (a decompression
    bomb's header: a few dozen bytes that would need ``3 * width * height`` bytes to decode)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def encode_special(pixels, kind):
    """``pixels`` (uint8 RGB) encoded as one of the formats users' folders hold besides plain
    8-bit RGB: ``png16`` (16-bit RGB), ``gray16`` (16-bit gray), ``palette`` (8-bit palette PNG),
    ``cmyk`` (CMYK JPEG, as print workflows write), ``gray_jpeg``. Returns the bytes."""
    import io

    from PIL import Image

    if kind == "png16":
        return tf.io.encode_png(pixels.astype(np.uint16) * 257).numpy()
    if kind == "gray16":
        return tf.io.encode_png(pixels[..., :1].astype(np.uint16) * 257).numpy()
    buf = io.BytesIO()
    image = Image.fromarray(pixels)
    if kind == "palette":
        image.convert("P", palette=Image.ADAPTIVE, colors=16).save(buf, "PNG")
    elif kind == "cmyk":
        image.convert("CMYK").save(buf, "JPEG", quality=95)
    elif kind == "gray_jpeg":
        image.convert("L").save(buf, "JPEG", quality=95)
    else:
        raise ValueError(kind)
    return buf.getvalue()


def chromium_browser(window="1280,900", network_log=False):
    """Debian's headless Chromium through Selenium (skips the test, saying why, without it).
    ``network_log``: record the page's requests (``browser.get_log("performance")``)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window}", "--hide-scrollbars"):
        options.add_argument(arg)
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)
