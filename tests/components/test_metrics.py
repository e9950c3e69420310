"""The metric registry: the one place a metric's direction is decided."""

import pytest

from tunekit.components import metrics
from tunekit.components.metrics import METRICS, Metric, direction_of, metrics_for
from tunekit.registry import UnknownName


def test_each_metric_knows_which_way_is_better():
    assert {m: direction_of(m) for m in ("val_accuracy", "val_r2", "test_accuracy", "test_r2")} == dict.fromkeys(
        ("val_accuracy", "val_r2", "test_accuracy", "test_r2"), "maximize"
    )
    for name in ("val_loss", "val_rmse", "val_mae", "train_loss", "params", "train_time"):
        assert direction_of(name) == "minimize", name


def test_monitors_per_task_are_per_epoch_validation_or_training_metrics():
    assert metrics_for("classification") == ["val_accuracy", "val_loss", "train_loss"]
    assert metrics_for("regression") == ["val_rmse", "val_mae", "val_r2", "val_loss", "train_loss"]
    assert metrics.is_trial_metric("params") and not metrics.is_trial_metric("val_loss")


def test_a_registered_metric_is_ranked_by_its_declared_direction_not_its_name(monkeypatch):
    # The old rule read the name's suffix: anything not ending in accuracy/r2 was minimized, so a
    # higher-is-better `val_f1` would have been minimized by early stopping.
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))  # registered for this test only
    METRICS.register("val_f1")(Metric("val_f1", "maximize", ("classification",), doc="F1 score"))
    assert direction_of("val_f1") == "maximize"
    assert "val_f1" in metrics_for("classification")


def test_an_unknown_metric_name_gets_a_did_you_mean():
    with pytest.raises(UnknownName) as err:
        METRICS.get("val_acuracy")
    assert str(err.value) == "unknown metric 'val_acuracy'" and "val_accuracy" in err.value.hint
