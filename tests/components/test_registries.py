"""Every registered component is built from YAML and trains one real step. Parametrized over the
registries themselves, so a new entry is tested the moment it is added."""

import pytest
import torch

from tests.conftest import config_from
from tunekit.components.losses import LOSSES
from tunekit.components.models import ACTIVATIONS, MODELS
from tunekit.components.optimizers import OPTIMIZERS
from tunekit.components.schedules import SCHEDULES
from tunekit.train.build import build_run
from tunekit.train.trainer import Diagnostics, fit


def one_step(text: str):
    config = config_from(text)
    run = build_run(config, torch.device("cpu"), 0)
    before = [p.detach().clone() for p in run.model.parameters()]
    result = fit(
        run,
        seed=0,
        monitor=config.study.metric,
        direction=config.study.direction,
        diagnostics=Diagnostics(enabled=False),
    )
    changed = any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters()))
    return result, changed


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer(name):
    _, changed = one_step(
        f"data: {{name: iris}}\nmodel: {{name: mlp, hidden: [8]}}\noptimizer: {{name: {name}}}\ntrain: {{epochs: 1}}\n"
    )
    assert changed


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule(name):
    result, _ = one_step(
        f"data: {{name: iris}}\nmodel: {{name: linear}}\nschedule: {{name: {name}}}\ntrain: {{epochs: 2}}\n"
    )
    assert len(result.history) == 2


@pytest.mark.parametrize("name", MODELS.names())
def test_model(name):
    data = "{name: digits, as_images: true}" if name in ("cnn", "resnet") else "{name: iris}"
    _, changed = one_step(f"data: {data}\nmodel: {{name: {name}}}\ntrain: {{epochs: 1, batch_size: 128}}\n")
    assert changed


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activation(name):
    _, changed = one_step(
        f"data: {{name: iris}}\nmodel: {{name: mlp, hidden: [8], activation: {name}, norm: layer, residual: true}}\ntrain: {{epochs: 1}}\n"
    )
    assert changed


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss(name):
    data = {"classification": "breast_cancer", "regression": "diabetes"}[LOSSES.get(name).task]
    result, changed = one_step(
        f"data: {{name: {data}}}\nmodel: {{name: mlp, hidden: [8]}}\nloss: {{name: {name}}}\ntrain: {{epochs: 1}}\n"
    )
    assert changed and result.history[0].metrics["train_loss"] > 0


def test_conv_model_on_flat_data_is_a_config_error():
    from tunekit.errors import ConfigError

    with pytest.raises(ConfigError, match="set data.as_images: true"):
        config_from("data: {name: iris}\nmodel: {name: cnn}\n")
