"""Trained models in use: the self-describing model.pt, predictions on raw inputs, and exports.

`tunekit.load(path)` returns a `Predictor`; `tunekit predict` and `tunekit export` are thin
commands over `predict.inputs`, `predict.predictor` and `predict.export`.
"""
