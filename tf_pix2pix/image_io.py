"""Reading and checking image files from disk (used by the data tools and by prediction).

Every image is decoded once here, so a file that would break training later is caught when it is
read: empty, truncated, not an image, or in a format the pipeline does not decode.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tf_pix2pix.errors import BadImageError  # noqa: F401

SUPPORTED_FORMATS = ("jpeg", "png", "bmp")
# Largest image the data tools decode (height x width from the header, checked first): a
# 60,000 x 60,000 PNG of a few hundred kilobytes would otherwise need 10.8 GB to decode.
MAX_PIXELS = 8192 * 8192
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """An image read from disk: its original bytes, its format and its decoded pixels."""

    path: str
    encoded: bytes
    format: str
    pixels: np.ndarray  # [H, W, 3] uint8 RGB
    mode: str = "rgb"  # colour mode of the file (see source_mode); pixels are always RGB

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def sniff_format(data: bytes) -> str | None:
    """Returns the image format named by the leading magic bytes, or ``None``."""
    signatures = (
        (b"\xff\xd8\xff", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"BM", "bmp"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
    )
    for magic, name in signatures:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def source_mode(data: bytes, fmt: str) -> str:
    """The colour mode stored in the file's header, before conversion to RGB.

    One of ``rgb``, ``grayscale``, ``grayscale_alpha``, ``rgba``, ``palette``, ``cmyk`` (the
    pipeline replicates gray to RGB and drops alpha; the build tools count these conversions).
    """
    if fmt == "png" and len(data) > 25:
        return {0: "grayscale", 2: "rgb", 3: "palette", 4: "grayscale_alpha",
                6: "rgba"}.get(data[25], "rgb")
    if fmt == "jpeg":
        try:
            channels = int(tf.io.extract_jpeg_shape(data)[2])
        except tf.errors.InvalidArgumentError:
            return "rgb"
        return {1: "grayscale", 4: "cmyk"}.get(channels, "rgb")
    if fmt == "bmp" and len(data) > 29:
        bits = int.from_bytes(data[28:30], "little")
        return "rgba" if bits == 32 else "palette" if bits <= 8 else "rgb"
    return "rgb"


def decode(encoded: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """Decodes JPEG/PNG/BMP bytes to ``[H, W, channels]`` uint8, eagerly or in a graph.

    JPEGs are decoded with libjpeg's accurate integer IDCT (``INTEGER_ACCURATE``), PIL's (and so
    the reference's) default: TensorFlow's default fast IDCT differs from it by 1-2 grey levels
    on most pixels. The one decoder of the project: training data, prediction and serving.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def jpeg():
        return tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE")

    def other():
        return tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                                  expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    image.set_shape([None, None, channels])
    return image


def declared_size(encoded: tf.Tensor) -> tf.Tensor:
    """``[height, width]`` (int64) an encoded JPEG, PNG or BMP declares in its header, read
    without decoding the pixels; ``[0, 0]`` for other bytes (decoding then rejects them)."""
    def be32(offset):
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, 4), tf.uint8), tf.int64)
        return b[0] * 16777216 + b[1] * 65536 + b[2] * 256 + b[3]

    def le32(offset):
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, 4), tf.uint8), tf.int64)
        value = b[0] + b[1] * 256 + b[2] * 65536 + b[3] * 16777216
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))  # signed, may be < 0

    length = tf.strings.length(encoded)
    magic = tf.strings.substr(encoded, 0, tf.minimum(length, 8))
    png = tf.logical_and(tf.equal(magic, b"\x89PNG\r\n\x1a\n"), length >= 24)
    bmp = tf.logical_and(tf.equal(tf.strings.substr(magic, 0, tf.minimum(length, 2)), b"BM"),
                         length >= 26)
    zero = tf.zeros([2], tf.int64)
    return tf.case([
        (tf.io.is_jpeg(encoded), lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2],
                                                 tf.int64)),
        (png, lambda: tf.stack([be32(20), be32(16)])),
        (bmp, lambda: tf.stack([le32(22), le32(18)]))], default=lambda: zero)


def read_image(path: str, max_pixels: int = MAX_PIXELS) -> ImageFile:
    """Reads and decodes one image file.

    Raises:
      BadImageError: empty, unreadable, not an image, unsupported format, corrupt data, or a
        header declaring more than ``max_pixels`` pixels (refused before decoding).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadImageError(path, f"cannot be read ({e.strerror})") from e
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise BadImageError(path, "not an image (no JPEG, PNG or BMP signature)")
    if fmt not in SUPPORTED_FORMATS:
        raise BadImageError(path, f"unsupported format {fmt}; convert it to PNG or JPEG")
    try:
        height, width = (int(v) for v in declared_size(data).numpy())
        if height * width > max_pixels:
            raise BadImageError(path, f"its header declares {width}x{height} pixels, more than "
                                f"the {max_pixels:,} the tools decode (a decompression bomb, or "
                                "an image to shrink first)")
        pixels = decode(data).numpy()
    except tf.errors.InvalidArgumentError as e:
        detail = e.message.strip().splitlines()[-1] if e.message else "decode failed"
        raise BadImageError(path, f"corrupt or truncated {fmt} data ({detail})") from e
    return ImageFile(path=path, encoded=data, format=fmt, pixels=pixels,
                     mode=source_mode(data, fmt))


def read_id_map(path: str, allow_color: bool = False) -> tuple[np.ndarray | None, ImageFile]:
    """Reads a map of class or instance ids: a grayscale PNG of 8 or 16 bits per pixel, whose
    values are the ids (Cityscapes' ``*_labelIds.png``, ``*_instanceIds.png``).

    Returns:
      ``(ids, file)``: ``[H, W]`` int32 ids, or ``None`` for an RGB(A) image when
      ``allow_color`` (pix2pixHD's ``label_nc`` 0 reads RGB inputs), and the file read.

    Raises:
      BadImageError: as :func:`read_image`; not a PNG (JPEG would change the ids); a palette,
        gray+alpha or 1/2/4-bit PNG; a colour image unless ``allow_color``.
    """
    image = read_image(path)
    data = image.encoded
    if image.format == "png" and image.mode == "grayscale":
        depth = data[24]
        if depth not in (8, 16):
            raise BadImageError(path, f"a {depth}-bit grayscale PNG; save the ids as an 8- or "
                                "16-bit grayscale PNG")
        dtype = tf.uint16 if depth == 16 else tf.uint8
        ids = tf.io.decode_png(data, channels=1, dtype=dtype).numpy()[..., 0]
        return ids.astype(np.int32), image
    if allow_color and image.mode in ("rgb", "rgba"):
        return None, image
    what = {"palette": "a palette PNG (its values are palette indices)",
            "grayscale_alpha": "a gray+alpha PNG"}.get(image.mode, f"a {image.mode} "
                                                                   f"{image.format.upper()}")
    raise BadImageError(path, f"{what}, not a map of ids; save the ids as an 8- or 16-bit "
                        "grayscale PNG (one channel, value = id)")


def encode_ids(ids: np.ndarray) -> bytes:
    """``[H, W]`` ids in 0..65535 as a 16-bit grayscale PNG (lossless; read back by
    ``data.decode_ids`` with the values unchanged, whatever the source's bit depth)."""
    return tf.io.encode_png(ids.astype(np.uint16)[..., None]).numpy()


def read_aligned_pair(path: str) -> ImageFile:
    """Reads an A|B image and checks that it is one: width exactly twice the height.

    Raises:
      BadImageError: as :func:`read_image`, or when the size is not that of an A|B pair.
    """
    image = read_image(path)
    if image.width != 2 * image.height:
        raise BadImageError(path, f"size {image.width}x{image.height} is not an A|B pair (width "
                            "must be twice the height)")
    return image


def list_files(folder: str) -> list[str]:
    """Sorted relative paths of the regular, non-hidden files directly inside ``folder``."""
    return sorted(name for name in os.listdir(folder)
                  if not name.startswith(".") and os.path.isfile(os.path.join(folder, name)))
