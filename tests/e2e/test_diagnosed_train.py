"""`train` on the runs the diagnostics are about, and the figures it records, through the real CLI.

A run a diagnostic stops is an outcome: the reason and epoch on stderr and in --json, the history
of the epochs that ran, exit 6, every seed trained. Gradient norms are read before clipping,
val_loss is the plain loss whatever the training loss's options, and `lr` is the lr the epoch's
first step used."""

import json
import os
import subprocess
import sys

import pytest

TUNEKIT = [sys.executable, "-m", "tunekit"]

ZERO_RELU = """\
name: zero
data: {name: digits}
model: {name: mlp, hidden: [32, 32, 32], activation: relu}
init: {weight: zeros, bias: zeros}
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 6, batch_size: 64}
"""

DEEP_SIGMOID = """\
name: deep
data: {name: digits}
model: {name: mlp, hidden: [32, 32, 32, 32, 32, 32, 32, 32, 32, 32], activation: sigmoid}
init: {weight: normal, std: 0.05}
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 4}
"""


def tunekit(tmp_path, *args):
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [*TUNEKIT, *map(str, args)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )


def config(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def history(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_stopped_train_is_an_outcome_with_its_history(tmp_path):
    out_dir = tmp_path / "runs" / "zero" / "train"
    (out_dir).mkdir(parents=True)
    (out_dir / "model.pt").write_bytes(b"an earlier model")
    result = tunekit(tmp_path, "train", config(tmp_path, ZERO_RELU), "--json")

    assert result.returncode == 6, result.stderr
    out = json.loads(result.stdout)  # stdout is still exactly one JSON document
    # All units of a zero-initialized ReLU net output 0: the reason points at the units, not the depth.
    assert out["stopped"]["reason"] == "dead_relu" and out["stopped"]["epoch"] == 3
    assert "ReLU" in out["stopped"]["detail"]
    assert out["epochs"] == 3 and out["checkpoint"] is None
    assert set(out["metrics"]) == {"val_loss", "val_accuracy"}  # the metrics so far; nothing tested
    assert "training stopped at epoch 3: dead_relu" in result.stderr and "--diagnostics off" in result.stderr
    assert "internal error" not in result.stderr
    lines = history(out_dir / "history.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 3] and lines[-1]["stopped"] == "dead_relu"
    assert json.loads((out_dir / "metrics.json").read_text())["stopped"]["reason"] == "dead_relu"
    assert (out_dir / "model.pt").read_bytes() == b"an earlier model"  # a stopped run replaces no model


def test_the_table_says_why_and_when(tmp_path):
    result = tunekit(tmp_path, "train", config(tmp_path, DEEP_SIGMOID))
    assert result.returncode == 6, result.stderr
    assert "stopped at epoch 3 by vanishing_gradients" in result.stdout
    assert "no checkpoint written" in result.stdout
    assert "batch norm" in result.stderr  # the hint names a remedy


def test_every_seed_trains_and_the_stopped_ones_are_counted(tmp_path):
    result = tunekit(tmp_path, "train", config(tmp_path, ZERO_RELU), "--seeds", "2", "--json")
    assert result.returncode == 6, result.stderr
    out = json.loads(result.stdout)
    assert [s["seed"] for s in out["seeds"]] == [0, 1]
    assert all(s["stopped"]["reason"] == "dead_relu" for s in out["seeds"])
    assert out["seed_stats"]["stopped"] == {"count": 2, "reasons": {"dead_relu": 2}}
    assert out["seed_stats"]["completed"] == 0
    assert (tmp_path / "runs" / "zero" / "train" / "seeds" / "1" / "history.jsonl").is_file()
    assert "2 of 2 seeds stopped by a diagnostic: dead_relu ×2" in result.stderr


def test_diagnostics_off_trains_through(tmp_path):
    result = tunekit(tmp_path, "train", config(tmp_path, ZERO_RELU), "--diagnostics", "off", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "stopped" not in out and out["epochs"] == 6 and "test_accuracy" in out["metrics"]
    assert (tmp_path / "runs" / "zero" / "train" / "model.pt").is_file()
    bad = tunekit(tmp_path, "train", config(tmp_path, ZERO_RELU), "--diagnostics", "maybe")
    assert bad.returncode == 2 and "--diagnostics 'maybe': expected on or off" in bad.stderr


def test_gradient_norms_are_read_before_clipping(tmp_path):
    # lr 100 with a clip of 1: the clipped norm is 1 every step; the raw one explodes, and says so.
    exploding = """\
name: ex
data: {name: diabetes}
model: {name: mlp, hidden: [64], activation: identity}
optimizer: {name: sgd, lr: 100}
loss: {name: mse}
train: {epochs: 4, batch_size: 64, grad_clip: 1.0}
"""
    result = tunekit(tmp_path, "train", config(tmp_path, exploding), "--json")
    assert result.returncode == 6, result.stderr
    assert json.loads(result.stdout)["stopped"]["reason"] == "exploding_gradients"

    clipped = exploding.replace("lr: 100", "lr: 0.01").replace("grad_clip: 1.0", "grad_clip: 0.05")
    result = tunekit(tmp_path, "train", config(tmp_path, clipped), "--json")
    assert result.returncode == 0, result.stderr
    records = history(tmp_path / "runs" / "ex" / "train" / "history.jsonl")
    assert all(r["grad_norm_clipped"] <= 0.05 + 1e-4 for r in records)
    assert all(r["grad_norm"] > 0.1 for r in records)  # the raw norm, not the clip value
    for r in records:
        assert r["grad_norm"] == pytest.approx(sum(v * v for v in r["layer_grad_norms"].values()) ** 0.5)


def test_a_dead_relu_collapse_is_not_called_vanishing(tmp_path):
    # A He-initialized ReLU net that a far too high lr knocks dead: the remedy is the lr, not the depth.
    collapse = ZERO_RELU.replace("init: {weight: zeros, bias: zeros}", "init: {weight: kaiming_normal}")
    collapse = collapse.replace("lr: 0.1", "lr: 100").replace("batch_size: 64", "batch_size: 64, grad_clip: 1.0")
    result = tunekit(tmp_path, "train", config(tmp_path, collapse), "--json")
    assert result.returncode == 6, result.stderr
    stopped = json.loads(result.stdout)["stopped"]
    assert stopped["reason"] == "dead_relu" and "a lower optimizer.lr" in result.stderr
    last = history(tmp_path / "runs" / "zero" / "train" / "history.jsonl")[-1]
    assert last["dead_relu_layer"] >= 0.9 and last["stopped"] == "dead_relu"


def test_val_loss_is_the_plain_loss_under_label_smoothing(tmp_path):
    smoothed = """\
name: smooth
data: {name: digits}
model: {name: mlp, hidden: [64]}
optimizer: {name: adam, lr: 0.01}
loss: {name: cross_entropy, label_smoothing: 0.3}
train: {epochs: 8, batch_size: 64}
"""
    result = tunekit(tmp_path, "train", config(tmp_path, smoothed), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    # Cross-entropy smoothed by 0.3 over 10 classes cannot go below ~1.18; the plain one can.
    assert metrics["val_accuracy"] > 0.9 and metrics["val_loss"] < 1.0 and metrics["test_loss"] < 1.0
    last = history(tmp_path / "runs" / "smooth" / "train" / "history.jsonl")[-1]
    assert last["train_loss"] > 1.1  # the optimized, smoothed loss


def test_lr_is_the_lr_each_epoch_trained_with(tmp_path):
    step = """\
name: cos
data: {name: digits}
model: {name: mlp, hidden: [16]}
optimizer: {name: sgd, lr: 0.1}
schedule: {name: cosine, interval: step}
train: {epochs: 3, batch_size: 64}
"""
    assert tunekit(tmp_path, "train", config(tmp_path, step)).returncode == 0
    records = history(tmp_path / "runs" / "cos" / "train" / "history.jsonl")
    assert records[0]["lr"] == pytest.approx(0.1)  # the first step's lr, not the next epoch's
    assert all(r["lr"] > r["lr_last"] > 0 for r in records)  # the last epoch never trained at 0
    assert records[1]["lr"] < records[0]["lr_last"]

    epoch = step.replace("interval: step", "interval: epoch")
    assert tunekit(tmp_path, "train", config(tmp_path, epoch)).returncode == 0
    records = history(tmp_path / "runs" / "cos" / "train" / "history.jsonl")
    assert records[0]["lr"] == pytest.approx(0.1) and all("lr_last" not in r for r in records)
    assert records[1]["lr"] == pytest.approx(0.1 * (1 + __import__("math").cos(__import__("math").pi / 3)) / 2)
