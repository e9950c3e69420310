"""Turning one concrete config into a trained model: build, batches, the training loop, the vectorized population engine, fine-tuning, lr-find. Knows nothing of Optuna."""
