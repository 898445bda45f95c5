import os

import pytest

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
