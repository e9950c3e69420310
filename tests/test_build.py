"""Values torch rejects become config errors with their key, before any trial runs."""

import pytest

from tunekit.build import check_buildable
from tunekit.config.load import validate_document
from tunekit.config.yaml_io import parse_yaml
from tunekit.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("optimizer: {name: adam, lr: -0.1}", "optimizer: Invalid learning rate: -0.1"),
        ("optimizer: {name: adam, betas: [0.9, 1.5]}", "optimizer: Invalid beta parameter at index 1"),
        ("optimizer: {name: sgd, nesterov: true}", "optimizer: Nesterov momentum requires a momentum"),
        ("schedule: {name: step, step_size: 0}", "schedule: step_size must be >= 1"),
        ("loss: {name: mse}", "loss.name: 'mse' is a regression loss but data 'iris' is classification"),
        ("study: {metric: val_rmse}", "study.metric: 'val_rmse' is not a classification metric"),
        ("study: {metric: val_acuracy}", "did you mean 'val_accuracy'?"),
        ("model: {name: mlp, dropout: 1.0}", "model: dropout must be in [0, 1)"),
        ("loss: {name: cross_entropy, class_weights: [1.0, 2.0]}", "loss.class_weights: has 2 entries but the data has 3 classes"),
        ("model: {name: mlp, norm: batch}\ntrain: {batch_size: 1}", "batch norm needs batches of 2 or more"),
    ],
)
def test_rejected_values(text, fragment):
    with pytest.raises(ConfigError) as info:
        check_buildable(validate_document(parse_yaml("data: {name: iris}\n" + text + "\n", "c.yaml")))
    assert any(fragment in line for line in info.value.lines()), info.value.lines()


def test_unavailable_device_is_an_environment_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DataError, match="device 'cuda' is not available"):
        check_buildable(validate_document(parse_yaml("data: {name: iris}\ntrain: {device: cuda}\n")))


def test_defaults_resolve_from_the_task():
    clf = check_buildable(validate_document(parse_yaml("data: {name: iris}\n")))
    reg = check_buildable(validate_document(parse_yaml("data: {name: diabetes}\n")))
    assert (clf.loss.name, clf.study.metric, clf.study.direction) == ("cross_entropy", "val_accuracy", "maximize")
    assert (reg.loss.name, reg.study.metric, reg.study.direction) == ("mse", "val_rmse", "minimize")
