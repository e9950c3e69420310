"""The learning-rate range test on real training: a sensible suggestion, and no trace left behind."""

import csv
import json

import torch

from tests.conftest import config_from
from tunekit.train.build import build_run
from tunekit.train.lr_find import lr_range_test

CONFIG = "name: lrf\ndata: {name: digits}\nmodel: {name: mlp, hidden: [64]}\noptimizer: {name: sgd, lr: 0.05, momentum: 0.9}\ntrain: {batch_size: 64}\n"


def test_restores_model_and_optimizer_bit_identically():
    run = build_run(config_from(CONFIG), torch.device("cpu"), 0)
    # give the optimizer some state first, so restoring it is a real test
    loss = run.loss_fn(run.model(run.split.X_train[:32]), run.split.y_train[:32])
    loss.backward()
    run.optimizer.step()
    model_before = {k: v.clone() for k, v in run.model.state_dict().items()}
    momentum_before = {id(p): run.optimizer.state[p]["momentum_buffer"].clone() for p in run.model.parameters()}
    curve = lr_range_test(run, 1e-6, 10.0, steps=60)
    assert curve.diverged_at is not None and len(curve.lrs) > 10
    assert all(torch.equal(v, model_before[k]) for k, v in run.model.state_dict().items())
    assert all(
        torch.equal(run.optimizer.state[p]["momentum_buffer"], momentum_before[id(p)]) for p in run.model.parameters()
    )
    assert run.optimizer.param_groups[0]["lr"] == 0.05  # the configured lr is back


def test_suggestion_lies_inside_the_sweep():
    run = build_run(config_from(CONFIG), torch.device("cpu"), 0)
    curve = lr_range_test(run, 1e-6, 10.0, steps=80)
    suggested, low, high = curve.suggestion()
    assert 1e-6 <= low < suggested < high <= curve.lrs[-1]
    assert 1e-3 <= suggested <= 1.0  # SGD with momentum on standardized digits


def test_cli_writes_the_curve(cli, write_config, runs):
    result = cli(
        "lr-find", write_config(CONFIG), "--runs", runs, "--json", "--steps", "40", "--min", "1e-5", "--max", "10"
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["search_range"][0] < out["suggested_lr"] < out["search_range"][1]
    rows = list(csv.DictReader(open(out["csv"])))
    assert rows and set(rows[0]) == {"lr", "loss", "smoothed_loss"}
    assert open(out["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"  # matplotlib is in the dev extra
    text = cli("lr-find", write_config(CONFIG), "--runs", runs, "--steps", "40")
    assert "suggested lr:" in text.stdout and "(lr, log scale)" in text.stdout
    assert cli("lr-find", write_config(CONFIG), "--min", "1", "--max", "0.1").exit_code == 2
