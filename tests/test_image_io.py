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
