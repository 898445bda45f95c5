import os

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix.image_io import BadImageError, list_files, read_image, sniff_format

from conftest import random_image, write_image


@pytest.mark.parametrize("head, fmt", [
    (b"\xff\xd8\xff\xe0", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM\x00", "bmp"),
    (b"GIF89a", "gif"), (b"RIFF\x00\x00\x00\x00WEBP", "webp"), (b"hello", None),
])
def test_sniff_format(head, fmt):
    assert sniff_format(head) == fmt


def test_read_image_returns_pixels_and_original_bytes(tmp_path):
    pixels = random_image(5, 7)
    data = write_image(str(tmp_path / "a.png"), pixels)
    image = read_image(str(tmp_path / "a.png"))
    assert (image.height, image.width, image.format, image.encoded) == (5, 7, "png", data)
    assert (image.pixels == pixels).all()


def test_missing_file_is_a_bad_image(tmp_path):
    with pytest.raises(BadImageError, match="cannot be read"):
        read_image(str(tmp_path / "missing.png"))


def test_list_files_skips_hidden_files_and_folders(tmp_path):
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    os.mkdir(tmp_path / "sub")
    assert list_files(str(tmp_path)) == ["a.png", "b.png"]


def test_jpeg_decoding_equals_pil_eagerly_and_in_a_dataset(tmp_path):
    import io

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from tf_pix2pix.image_io import decode

    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(0, 6, (48, 64, 3)), axis=1)
    pixels = np.clip(smooth - smooth.min(axis=1, keepdims=True) + 40, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)  # 4:2:0, like most photos
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode(data).numpy(), expected)
    in_map = next(iter(tf.data.Dataset.from_tensors(data).map(decode))).numpy()
    np.testing.assert_array_equal(in_map, expected)
    # TensorFlow's default (fast) IDCT does differ from PIL on this image.
    fast = tf.io.decode_jpeg(data, channels=3).numpy()
    assert np.abs(fast.astype(int) - expected).max() >= 1


# --- hostile inputs (property-based) --------------------------------------------------------

def _valid_files():
    import numpy as np
    import tensorflow as tf

    pixels = np.random.default_rng(0).integers(0, 255, (12, 10, 3)).astype(np.uint8)
    return [tf.io.encode_png(pixels).numpy(), tf.io.encode_jpeg(pixels).numpy(),
            tf.io.encode_png(pixels[..., :1]).numpy()]


def test_random_and_truncated_bytes_give_an_image_or_a_bad_image_error(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tf_pix2pix.image_io import BadImageError, read_image

    valid = _valid_files()
    candidates = st.one_of(
        st.binary(max_size=200),
        st.builds(lambda i, cut: valid[i][:cut], st.integers(0, len(valid) - 1),
                  st.integers(0, 400)),
        st.builds(lambda i, pos, b: valid[i][:pos] + bytes([b]) + valid[i][pos + 1:],
                  st.integers(0, len(valid) - 1), st.integers(0, 300), st.integers(0, 255)))

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(candidates)
    def check(data):
        path = tmp_path / "x.img"
        path.write_bytes(data)
        try:
            image = read_image(str(path))
        except BadImageError as e:
            assert str(path) in str(e) and e.reason
            return
        assert image.pixels.ndim == 3 and image.pixels.shape[2] == 3

    check()


def test_declared_sizes_are_read_from_headers_without_decoding():
    from tf_pix2pix.image_io import declared_size

    png = tf.io.encode_png(random_image(7, 11)).numpy()
    jpeg = tf.io.encode_jpeg(random_image(9, 5)).numpy()
    bmp = bytearray(b"BM" + bytes(52))
    bmp[18:22] = (13).to_bytes(4, "little")
    bmp[22:26] = (-6).to_bytes(4, "little", signed=True)  # top-down BMPs store -height
    for data, expected in ((png, [7, 11]), (jpeg, [9, 5]), (bytes(bmp), [6, 13]),
                           (b"GIF89a...", [0, 0]), (b"", [0, 0])):
        assert declared_size(tf.constant(data)).numpy().tolist() == expected


@pytest.mark.parametrize("kind, mode", [("png16", "rgb"), ("gray16", "grayscale"),
                                        ("palette", "palette"), ("cmyk", "cmyk"),
                                        ("gray_jpeg", "grayscale")])
def test_16_bit_palette_and_cmyk_files_decode_to_rgb(tmp_path, kind, mode):
    import io

    from PIL import Image

    from conftest import encode_special

    pixels = random_image(9, 14, seed=2)
    data = encode_special(pixels, kind)
    path = tmp_path / "x.img"
    path.write_bytes(data)
    image = read_image(str(path))
    assert image.pixels.shape == (9, 14, 3) and image.mode == mode
    if kind in ("png16", "gray16"):
        # 16-bit samples keep their high byte (PIL would clip 16-bit gray at 255 instead).
        expected = pixels if kind == "png16" else np.repeat(pixels[..., :1], 3, axis=2)
        np.testing.assert_array_equal(image.pixels, expected)
    else:  # as PIL's convert("RGB"), the reference's loader
        np.testing.assert_array_equal(image.pixels,
                                      np.array(Image.open(io.BytesIO(data)).convert("RGB")))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    from conftest import png_header_only

    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(60000, 60000))  # 10.8 GB if decoded
    with pytest.raises(BadImageError, match="header declares 60000x60000 pixels"):
        read_image(str(path))
    path.write_bytes(tf.io.encode_png(random_image(20, 30)).numpy())
    with pytest.raises(BadImageError, match="declares 30x20 pixels, more than the 599"):
        read_image(str(path), max_pixels=599)
    assert read_image(str(path), max_pixels=600).pixels.shape == (20, 30, 3)


def test_any_size_and_format_decodes_to_its_shape_or_a_bad_image_error(tmp_path):
    """Property: 1x1, thin and odd-sized images in every format, whole or cut short, give their
    own shape in RGB or a BadImageError naming the file — never a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from conftest import encode_special

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(1, 40), st.integers(1, 40),
           st.sampled_from(["png", "jpeg", "png16", "gray16", "palette", "cmyk", "gray_jpeg"]),
           st.one_of(st.none(), st.floats(0.0, 0.99)), st.integers(0, 1000))
    def check(h, w, kind, cut, seed):
        pixels = random_image(h, w, seed=seed)
        data = (tf.io.encode_png(pixels).numpy() if kind == "png" else
                tf.io.encode_jpeg(pixels).numpy() if kind == "jpeg" else
                encode_special(pixels, kind))
        if cut is not None:
            data = data[:int(len(data) * cut)]
        path = tmp_path / "x.img"
        path.write_bytes(data)
        try:
            image = read_image(str(path))
        except BadImageError as e:
            assert e.path == str(path) and e.reason
            assert cut is not None, f"a whole {kind} file of {w}x{h} was refused: {e.reason}"
            return
        assert image.pixels.shape == (h, w, 3)

    check()
