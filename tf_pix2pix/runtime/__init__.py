"""The runtime: the one training loop, checkpointing and resume, workers and signals, the model_dir lock."""
