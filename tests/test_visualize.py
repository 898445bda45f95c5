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
