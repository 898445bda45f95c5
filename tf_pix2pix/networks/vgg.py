"""The VGG19 feature extractor of pix2pixHD's perceptual loss (NVIDIA/pix2pixHD ``networks.py``,
``Vgg19``): the activations relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.

Keras's ``VGG19(include_top=False)`` has the same layers (3x3 convs padded by 1 with ReLU, 2x2
max pooling); its ``blockK_conv1`` outputs are the reference's slices' outputs. The reference
feeds the generator's [-1, 1] RGB images to it without ImageNet normalisation, and so does this
module. The weights are never downloaded here: a user passes Keras's
``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (``--vgg_weights``). Those are the Caffe
VGG19 weights Keras ships (trained on BGR, mean-subtracted 0..255 images), not torchvision's, so
the loss has the reference's form, not its exact values.
"""

from __future__ import annotations

import keras

from tf_pix2pix.configuration import ConfigError

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# relu1_1 ... relu5_1, and the reference's VGGLoss weights of their L1 distances.
FEATURE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
FEATURE_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def vgg19_features(weights: str | None, name: str = "vgg19_features") -> keras.Model:
    """A frozen model from ``[N, H, W, 3]`` images to the five activations of
    ``FEATURE_LAYERS`` (float32).

    Args:
      weights: path of a Keras VGG19 "notop" weights file; ``None`` keeps the random
        initialisation (tests only: the loss then means nothing).
      name: the model's name.

    Raises:
      ConfigError: the file is missing or does not hold VGG19's weights.
    """
    vgg = keras.applications.VGG19(include_top=False, weights=None,
                                   input_shape=(None, None, 3))
    if weights is not None:
        try:
            vgg.load_weights(weights)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"--vgg_weights={weights}: cannot load VGG19 weights "
                              f"({str(e).splitlines()[0][:160]}); pass Keras's {WEIGHTS_FILE}"
                              ) from e
    outputs = [keras.layers.Activation("linear", dtype="float32", name=f"relu{i + 1}_1")(
        vgg.get_layer(layer).output) for i, layer in enumerate(FEATURE_LAYERS)]
    model = keras.Model(vgg.inputs, outputs, name=name)
    model.trainable = False
    return model
