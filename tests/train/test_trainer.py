"""The training loop on real data: it learns, diagnoses divergence, stops early, keeps the best epoch."""

import pytest
import torch

from tests.conftest import config_from
from tunekit.train.batches import steps_per_epoch
from tunekit.train.build import build_run
from tunekit.train.trainer import Diagnostics, Diverged, fit


def make_run(text: str, seed: int = 0):
    config = config_from(text)
    return build_run(config, torch.device("cpu"), seed), config


def final_loss(optimizer: str) -> float:
    run, _ = make_run(
        f"data: {{name: digits}}\nmodel: {{name: mlp, hidden: [32]}}\n{optimizer}\ntrain: {{epochs: 4, batch_size: 64}}\n"
    )
    result = fit(run, seed=0, monitor="val_loss", direction="minimize")
    return result.history[-1].metrics["train_loss"]


def test_learns_iris():
    run, _ = make_run(
        "data: {name: iris}\nmodel: {name: mlp, hidden: [32]}\noptimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 30, batch_size: 16}\n"
    )
    result = fit(run, seed=0, monitor="val_accuracy", direction="maximize")
    assert result.best["val_accuracy"] >= 0.9
    assert result.history[0].metrics["train_loss"] > result.history[-1].metrics["train_loss"]
    assert set(result.history[0].layer_grad_norms) == {"blocks.0", "head"}


def test_momentum_and_adam_beat_plain_sgd():
    plain = final_loss("optimizer: {name: sgd, lr: 0.01}")
    momentum = final_loss("optimizer: {name: sgd, lr: 0.01, momentum: 0.9}")
    adam = final_loss("optimizer: {name: adam, lr: 0.01}")
    assert momentum < plain and adam < plain


def test_batch_modes_take_one_or_n_steps_per_epoch():
    assert steps_per_epoch(90, "full") == 1
    assert steps_per_epoch(90, 1) == 90
    assert steps_per_epoch(90, 32) == 3
    assert steps_per_epoch(65, 32) == 2  # a trailing batch of one sample is folded away (batch norm)
    counts = {}
    for bs in ("full", 1):
        run, _ = make_run(
            f"data: {{name: iris}}\nmodel: {{name: linear}}\noptimizer: {{name: sgd, lr: 0.01}}\ntrain: {{epochs: 1, batch_size: {bs}}}\n"
        )
        steps = []
        run.optimizer.register_step_post_hook(lambda *a, steps=steps: steps.append(1))
        fit(run, seed=0, monitor="val_loss", direction="minimize")
        counts[bs] = len(steps)
    assert counts == {"full": 1, 1: len(run.split.X_train)}


def test_huge_learning_rate_is_flagged():
    run, _ = make_run(
        "data: {name: digits}\nmodel: {name: mlp, hidden: [64]}\noptimizer: {name: sgd, lr: 1e6}\ninit: {weight: normal, std: 1.0}\ntrain: {epochs: 3}\n"
    )
    with pytest.raises(Diverged) as info:
        fit(run, seed=0, monitor="val_accuracy", direction="maximize")
    assert info.value.reason in ("nonfinite_loss", "exploding_gradients")


def test_deep_sigmoid_net_has_vanishing_gradients():
    run, _ = make_run(
        "data: {name: digits}\nmodel: {name: mlp, hidden: [32, 32, 32, 32, 32, 32, 32, 32, 32, 32], activation: sigmoid}\n"
        "init: {weight: normal, std: 0.05}\noptimizer: {name: sgd, lr: 0.01}\ntrain: {epochs: 3}\n"
    )
    with pytest.raises(Diverged) as info:
        fit(run, seed=0, monitor="val_accuracy", direction="maximize")
    assert info.value.reason == "vanishing_gradients"


def test_the_same_net_with_relu_and_he_init_trains():
    run, _ = make_run(
        "data: {name: digits}\nmodel: {name: mlp, hidden: [32, 32, 32, 32, 32, 32, 32, 32, 32, 32], activation: relu, norm: batch}\n"
        "init: {weight: kaiming_normal}\noptimizer: {name: adam, lr: 0.003}\ntrain: {epochs: 3}\n"
    )
    result = fit(run, seed=0, monitor="val_accuracy", direction="maximize")
    assert result.best["val_accuracy"] > 0.5


def test_early_stopping_and_best_epoch_restore():
    run, _ = make_run(
        "data: {name: iris}\nmodel: {name: mlp, hidden: [16]}\noptimizer: {name: adam, lr: 0.05}\n"
        "train: {epochs: 200, batch_size: 16, early_stopping: {patience: 3, metric: val_loss}}\n"
    )
    result = fit(run, seed=0, monitor="val_loss", direction="minimize")
    assert result.stopped_early and len(result.history) < 200
    best = min(r.metrics["val_loss"] for r in result.history)
    assert result.best["val_loss"] == best
    from tunekit.train.trainer import evaluate

    # The model holds the best epoch's weights, not the last epoch's.
    assert abs(evaluate(run, run.split.X_val, run.split.y_val, "val")["val_loss"] - best) < 1e-5


def test_same_seed_same_result():
    text = "data: {name: iris}\nmodel: {name: mlp, hidden: [16], dropout: 0.2}\ntrain: {epochs: 3, batch_size: 16}\n"
    a = fit(make_run(text, seed=3)[0], seed=3, monitor="val_loss", direction="minimize")
    b = fit(make_run(text, seed=3)[0], seed=3, monitor="val_loss", direction="minimize")
    assert [r.metrics["train_loss"] for r in a.history] == [r.metrics["train_loss"] for r in b.history]


def test_regression_metrics_are_in_data_units():
    run, _ = make_run(
        "data: {name: diabetes}\nmodel: {name: mlp, hidden: [32]}\noptimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 20, batch_size: 32}\n"
    )
    result = fit(run, seed=0, monitor="val_rmse", direction="minimize")
    assert 40 < result.best["val_rmse"] < 80 and result.best["val_r2"] > 0.2  # diabetes targets span 25..346


def test_gradient_clipping_by_norm_bounds_the_step():
    run, _ = make_run(
        "data: {name: iris}\nmodel: {name: mlp, hidden: [16]}\noptimizer: {name: sgd, lr: 0.1}\ntrain: {epochs: 1, grad_clip: {norm: 1e-3}}\n"
    )
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    fit(run, seed=0, monitor="val_loss", direction="minimize")
    moved = sum(float((run.model.state_dict()[k] - v).norm() ** 2) for k, v in before.items()) ** 0.5
    steps = steps_per_epoch(len(run.split.X_train), 64)
    assert moved <= 0.1 * 1e-3 * steps + 1e-7  # each update is at most lr x clip norm


def test_dead_relu_fraction_is_measured():
    run, _ = make_run(
        "data: {name: iris}\nmodel: {name: mlp, hidden: [32]}\ninit: {weight: kaiming_normal, bias: constant, bias_value: -100.0}\n"
        "optimizer: {name: sgd, lr: 0.0}\ntrain: {epochs: 1}\n"
    )
    result = fit(run, seed=0, monitor="val_loss", direction="minimize", diagnostics=Diagnostics(enabled=False))
    assert result.history[0].metrics["dead_relu"] == 1.0  # a -100 bias kills every unit
    healthy, _ = make_run("data: {name: iris}\nmodel: {name: mlp, hidden: [32]}\ntrain: {epochs: 1}\n")
    assert fit(healthy, seed=0, monitor="val_loss", direction="minimize").history[0].metrics["dead_relu"] < 0.5
    tanh, _ = make_run("data: {name: iris}\nmodel: {name: mlp, hidden: [32], activation: tanh}\ntrain: {epochs: 1}\n")
    assert "dead_relu" not in fit(tanh, seed=0, monitor="val_loss", direction="minimize").history[0].metrics


def test_biases_and_norms_get_no_weight_decay_unless_asked():
    run, _ = make_run(
        "data: {name: iris}\nmodel: {name: mlp, hidden: [8], norm: layer}\noptimizer: {name: adamw, weight_decay: 0.1}\n"
    )
    decay, no_decay = run.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(no_decay["params"]) == 4  # hidden bias, layer-norm weight and bias, head bias
    run, _ = make_run(
        "data: {name: iris}\nmodel: {name: mlp, hidden: [8]}\noptimizer: {name: adamw, weight_decay: 0.1, decay_bias_and_norm: true}\n"
    )
    assert len(run.optimizer.param_groups) == 1 and run.optimizer.param_groups[0]["weight_decay"] == 0.1


def test_gradient_clipping_by_value_bounds_each_component():
    run, _ = make_run(
        "data: {name: iris}\nmodel: {name: linear}\noptimizer: {name: sgd, lr: 1.0}\ntrain: {epochs: 1, batch_size: full, grad_clip: {value: 1e-4}}\n"
    )
    before = run.model.head.weight.detach().clone()
    fit(run, seed=0, monitor="val_loss", direction="minimize")
    assert float((run.model.head.weight.detach() - before).abs().max()) <= 1e-4 * (
        1 + 1e-3
    )  # one full-batch step of lr x clip (float32)


def test_bf16_autocast_trains_on_cpu():
    run, _ = make_run(
        "data: {name: digits}\nmodel: {name: mlp, hidden: [64]}\noptimizer: {name: adam, lr: 0.003}\ntrain: {epochs: 4, precision: bf16}\n"
    )
    result = fit(run, seed=0, monitor="val_accuracy", direction="maximize")
    assert result.best["val_accuracy"] > 0.8 and all(
        p.dtype == torch.float32 for p in run.model.parameters()
    )  # weights stay fp32
