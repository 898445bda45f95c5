import numpy as np
import tensorflow as tf

from tf_pix2pix.visualize import comparison_grid, grid_png, save_png, to_uint8


def test_grid_places_input_output_target_side_by_side():
    inputs = -tf.ones([2, 4, 5, 1])       # grayscale input is shown as RGB
    outputs = tf.zeros([2, 4, 5, 3])
    targets = tf.ones([2, 4, 5, 3])
    grid = comparison_grid(inputs, outputs, targets).numpy()
    assert grid.shape == (2, 4, 15, 3)
    np.testing.assert_allclose(grid[:, :, :5], 0.0)
    np.testing.assert_allclose(grid[:, :, 5:10], 0.5)
    np.testing.assert_allclose(grid[:, :, 10:], 1.0)


def test_grid_png_stacks_rows_and_saves(tmp_path):
    data = grid_png(tf.zeros([3, 4, 4, 3]), tf.ones([3, 4, 4, 3]))
    image = tf.io.decode_png(data).numpy()
    assert image.shape == (12, 8, 3)
    assert (image[:, :4] == 128).all() and (image[:, 4:] == 255).all()
    save_png(str(tmp_path / "g.png"), data)
    assert (tmp_path / "g.png").read_bytes() == data
    assert not (tmp_path / "g.png.tmp").exists()


def test_to_uint8():
    assert to_uint8(tf.constant([-1.0, 0.0, 1.0])).numpy().tolist() == [0, 128, 255]


def test_sample_pngs_name_their_columns_and_enlarge_small_tiles():
    """Issue 36: the sample grids were 64-px tiles without captions."""
    from tf_pix2pix.visualize import CAPTION_HEIGHT, captioned_png, column_captions

    assert column_captions("real_A | fake_B, then real_B | idt_B (G(B), which should stay B)") \
        == [["real_A", "fake_B"], ["real_B", "idt_B"]]
    dark, light = -tf.ones([2, 32, 32, 3]), tf.ones([2, 32, 32, 3])
    grid = comparison_grid(dark, light)
    image = tf.io.decode_png(captioned_png([(grid, ["input", "output"]),
                                            (grid, None)])).numpy()
    # 32-px tiles enlarged 4x (nearest) to 128; one caption strip, above the first grid only.
    assert image.shape == (CAPTION_HEIGHT + 2 * 2 * 128, 2 * 128, 3)
    strip, tiles = image[:CAPTION_HEIGHT], image[CAPTION_HEIGHT:]
    for column in (0, 1):  # text (dark pixels) over each column, on white
        part = strip[:, column * 128:(column + 1) * 128]
        assert (part < 100).any() and (part == 255).mean() > 0.7
    assert (tiles[:, :128] == 0).all() and (tiles[:, 128:] == 255).all()
    # Large tiles stay as they are.
    big = tf.io.decode_png(captioned_png([(comparison_grid(tf.zeros([1, 200, 300, 3])),
                                           None)])).numpy()
    assert big.shape == (200, 300, 3)
