"""Tables at the terminal's width: at 80 columns no line is wider, the trial number and the metric
lead every table, and every parameter is still shown (in a further table, with a legend)."""

import os
import subprocess
import sys

import pytest

TUNEKIT = [sys.executable, "-m", "tunekit"]

MANY = """\
name: wide
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [8], dropout: 0.1, activation: relu}
optimizer: {name: sgd, lr: 0.01, momentum: 0.5, weight_decay: 0.0001}
train: {epochs: 1, batch_size: 32}
study: {trials: 3, sampler: {name: random, seed: 0}, pruner: {name: none}}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  optimizer.momentum: {low: 0.0, high: 0.99}
  optimizer.weight_decay: {low: 1e-6, high: 1e-2, log: true}
  model.dropout: {low: 0.0, high: 0.5}
  model.hidden: {choices: [[8], [16, 16], [32, 32, 32]]}
  model.activation: {choices: [relu, tanh, leaky_relu]}
  train.batch_size: {choices: [16, 32, 64]}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wide")
    (folder / "c.yaml").write_text(MANY)
    done = subprocess.run([*TUNEKIT, "search", "c.yaml"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder


def run(folder, *args, columns=None):
    env = {**os.environ, **({"COLUMNS": str(columns)} if columns else {})}
    return subprocess.run([*TUNEKIT, *args], cwd=folder, capture_output=True, text=True, timeout=120, env=env)


def tables(text):
    return [line for line in text.splitlines() if "┃" in line]  # one header line per table


@pytest.mark.parametrize("columns", [80, 60])
def test_the_report_fits_the_terminal_and_shows_every_parameter(study, columns):
    result = run(study, "report", "wide", columns=columns)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    headers = tables(result.stdout)
    assert len(headers) >= 2
    assert all(h.split("┃")[0].strip() == "#" and "val_accuracy" in h for h in headers)
    shown = " ".join(headers)
    for column in ("lr", "momentum", "weight_decay", "dropout", "hidden", "activation", "batch_size"):
        assert column in shown
    assert "columns: " in result.stdout and "lr = optimizer.lr" in result.stdout


def test_wide_keeps_one_table(study):
    result = run(study, "report", "wide", "--wide", columns=80)
    assert result.returncode == 0 and len(tables(result.stdout)) == 1


def test_list_fits_80_columns(study):
    result = run(study, "list", columns=80)
    assert result.returncode == 0 and max(len(line) for line in result.stdout.splitlines()) <= 80
