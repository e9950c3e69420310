"""The metrics a study, early stopping and the report can name, each knowing which way is better.

Torch-free: the report and the CLI read this too. This is the one place that decides a metric's
direction; nothing else guesses it from the name.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunekit.registry import Registry


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # "maximize" or "minimize"
    tasks: tuple[str, ...]  # the tasks that record it ("classification", "regression")
    per_epoch: bool = True  # False: measured once per trial (params, train_time), an objective only
    doc: str = ""


METRICS: Registry[Metric] = Registry("metric")
BOTH = ("classification", "regression")


def _add(name: str, direction: str, tasks: tuple[str, ...], doc: str, per_epoch: bool = True) -> None:
    METRICS.register(name)(Metric(name, direction, tasks, per_epoch, doc))


for split in ("val", "test"):
    _add(f"{split}_accuracy", "maximize", ("classification",), f"share of {split} rows classified right")
    _add(f"{split}_rmse", "minimize", ("regression",), f"root mean squared error on {split}, in the target's units")
    _add(f"{split}_mae", "minimize", ("regression",), f"mean absolute error on {split}, in the target's units")
    _add(f"{split}_r2", "maximize", ("regression",), f"coefficient of determination on {split}")
    _add(f"{split}_loss", "minimize", BOTH, f"the task's plain loss on the {split} split")
_add("train_loss", "minimize", BOTH, "the optimized loss, averaged over the epoch's batches")
_add("params", "minimize", BOTH, "number of trainable weights", per_epoch=False)
_add("train_time", "minimize", BOTH, "seconds the trial trained", per_epoch=False)


def default_metric(task: str) -> str:
    return "val_accuracy" if task == "classification" else "val_rmse"


def direction_of(metric: str) -> str:
    """Which way `metric` is better. Names tunekit does not record (a plugin's) default to minimize."""
    return METRICS.get(metric).direction if metric in METRICS else "minimize"


def metrics_for(task: str) -> list[str]:
    """What a study or early stopping can monitor per epoch for this task (validation and training)."""
    found = [METRICS.get(name) for name in METRICS]
    return [m.name for m in found if task in m.tasks and m.per_epoch and not m.name.startswith("test_")]


def is_trial_metric(metric: str) -> bool:
    """Measured once per trial rather than per epoch (an objective, never a monitor)."""
    return metric in METRICS and not METRICS.get(metric).per_epoch


def better(a: float, b: float, direction: str, min_delta: float = 0.0) -> bool:
    """Is `a` better than `b` by more than `min_delta`?"""
    return a > b + min_delta if direction == "maximize" else a < b - min_delta
