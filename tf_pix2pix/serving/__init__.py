"""Serving a trained generator: export (SavedModel, TFLite, ONNX) and prediction."""
