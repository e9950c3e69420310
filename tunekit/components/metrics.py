"""Metric names and which way is better. Torch-free: the report and the CLI read this too."""

from __future__ import annotations

CLASSIFICATION = ["val_accuracy", "val_loss", "train_loss"]
REGRESSION = ["val_rmse", "val_mae", "val_r2", "val_loss", "train_loss"]
HIGHER_IS_BETTER = {"val_accuracy", "val_r2", "test_accuracy", "test_r2"}


def default_metric(task: str) -> str:
    return "val_accuracy" if task == "classification" else "val_rmse"


def direction_of(metric: str) -> str:
    return "maximize" if metric in HIGHER_IS_BETTER else "minimize"


def metrics_for(task: str) -> list[str]:
    return CLASSIFICATION if task == "classification" else REGRESSION


def better(a: float, b: float, direction: str, min_delta: float = 0.0) -> bool:
    """Is `a` better than `b` by more than `min_delta`?"""
    return a > b + min_delta if direction == "maximize" else a < b - min_delta


# Objectives measured once per trial rather than per epoch; both are costs.
TRIAL_METRICS = {"params": "minimize", "train_time": "minimize"}


def objective_direction(metric: str) -> str:
    return TRIAL_METRICS.get(metric) or direction_of(metric)
