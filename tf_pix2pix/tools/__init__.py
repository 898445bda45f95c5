"""The command-line tools beyond train/export/predict: the perceptual study, the feature clustering, the PyTorch importer, the paper's experiment runner."""
