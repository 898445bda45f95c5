"""tf_pix2pix: image-to-image translation (pix2pix, CycleGAN, CUT, pix2pixHD) in TensorFlow 2 /
Keras 3.

The public API is the names in ``__all__`` (documented in :mod:`tf_pix2pix.api`)::

    import tf_pix2pix
    config = tf_pix2pix.config("cycle_gan", crop_size=128)
    result = tf_pix2pix.train(preset="demo")
    translator = tf_pix2pix.load("runs/demo")
    image = translator("photo.png")  # [H, W, 3] uint8

Everything else is internal. The names load their module on first use (SPEC 1 lazy loading,
``lazy_loader``), so ``import tf_pix2pix`` and the light modules (``errors``, ``config``,
``cli``, the perceptual-study server) start without importing TensorFlow.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__, submod_attrs={"api": ["Translator", "config", "export", "import_pretrained",
                                    "load", "predict", "train"]})
