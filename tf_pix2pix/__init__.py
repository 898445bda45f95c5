"""tf_pix2pix: pix2pix in TensorFlow 2 / Keras 3."""
