"""Initialization schemes do what their names say."""

import pytest
import torch

from tunekit.components.data import load_split
from tunekit.components.initializers import WEIGHT_INITS, apply_init, expected_std
from tunekit.components.models import MODELS
from tunekit.config.load import validate_document
from tunekit.config.yaml_io import parse_yaml
from tunekit.train.build import build_run, resolve
from tunekit.train.trainer import Diagnostics, fit


def test_zero_init_never_breaks_symmetry():
    config = validate_document(
        parse_yaml(
            "data: {name: iris}\nmodel: {name: mlp, hidden: [6], activation: tanh}\n"
            "init: {weight: constant, value: 0.1, bias: zeros}\noptimizer: {name: sgd, lr: 0.1}\n"
            "train: {epochs: 5, batch_size: 16}\n"
        )
    )
    config = resolve(config, load_split("iris", {}, 0.2, 0.2, True, 0))
    run = build_run(config, torch.device("cpu"), seed=0)
    fit(run, seed=0, monitor="val_accuracy", direction="maximize", diagnostics=Diagnostics(enabled=False))
    w = run.model.blocks[0].linear.weight
    # Every hidden unit got the same gradient every step: the rows are still identical.
    assert torch.allclose(w, w[0].expand_as(w)) and not torch.allclose(w, torch.full_like(w, 0.1))


@pytest.mark.parametrize(
    "scheme, activation",
    [("xavier_uniform", "tanh"), ("xavier_normal", "tanh"), ("kaiming_normal", "relu"), ("kaiming_uniform", "relu")],
)
def test_variance_matches_the_formula(scheme, activation):
    torch.manual_seed(0)
    model = MODELS.get("mlp")((400,), 10, hidden=[300], activation=activation)
    apply_init(model, scheme, {}, "zeros", 0.0)
    w = model.blocks[0].linear.weight
    std = expected_std(scheme, 400, 300, activation)
    assert abs(float(w.detach().std()) / std - 1) < 0.03
    assert float(model.blocks[0].linear.bias.detach().abs().max()) == 0.0
    head_std = expected_std(scheme, 300, 10, "linear")  # the output layer has no activation after it
    assert abs(float(model.head.weight.detach().std()) / head_std - 1) < 0.1


@pytest.mark.parametrize("scheme", WEIGHT_INITS.names())
def test_every_scheme_applies_to_every_model(scheme):
    for name, shape in [("linear", (4,)), ("mlp", (4,)), ("cnn", (1, 8, 8)), ("resnet", (1, 8, 8))]:
        model = MODELS.get(name)(shape, 3)
        apply_init(model, scheme, {}, "constant", 0.5)
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_weight_norm_layers_are_initialized_through_the_parametrization():
    torch.manual_seed(0)
    model = MODELS.get("mlp")((100,), 2, hidden=[50], weight_norm=True)
    apply_init(model, "kaiming_normal", {}, "zeros", 0.0)
    w = model.blocks[0].linear.weight.detach()
    assert abs(float(w.std()) / expected_std("kaiming_normal", 100, 50, "relu") - 1) < 0.05
    g = model.blocks[0].linear.parametrizations.weight.original0.detach()
    assert torch.allclose(g.flatten(), w.norm(dim=1))  # magnitude = row norm of the initialized weight


def test_zero_init_with_weight_norm_is_refused():
    model = MODELS.get("mlp")((10,), 2, hidden=[5], weight_norm=True)
    with pytest.raises(ValueError, match="weight normalization cannot divide by"):
        apply_init(model, "zeros", {}, "zeros", 0.0)
