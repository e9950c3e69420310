"""Values torch rejects become config errors with their key, before any trial runs."""

import pytest

from tests.conftest import config_from
from tunekit.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("optimizer: {name: adam, lr: -0.1}", "optimizer.lr: Invalid learning rate: -0.1"),
        ("optimizer: {name: adam, betas: [0.9, 1.5]}", "optimizer.betas: Invalid beta parameter at index 1"),
        ("optimizer: {name: sgd, nesterov: true}", "optimizer.nesterov: Nesterov momentum requires a momentum"),
        ("schedule: {name: step, step_size: 0}", "schedule.step_size: step_size must be >= 1"),
        ("loss: {name: mse}", "loss.name: 'mse' is a regression loss but data 'iris' is classification"),
        ("study: {metric: val_rmse}", "study.metric: 'val_rmse' is not a classification metric"),
        ("study: {metric: val_acuracy}", "did you mean 'val_accuracy'?"),
        ("model: {name: mlp, dropout: 1.0}", "model.dropout: dropout must be in [0, 1)"),
        (
            "loss: {name: cross_entropy, class_weights: [1.0, 2.0]}",
            "loss.class_weights: has 2 entries but the data has 3 classes",
        ),
        ("model: {name: mlp, norm: batch}\ntrain: {batch_size: 1}", "batch norm needs batches of 2 or more"),
    ],
)
def test_rejected_values(text, fragment):
    with pytest.raises(ConfigError) as info:
        config_from("data: {name: iris}\n" + text + "\n", "c.yaml")
    assert any(fragment in line for line in info.value.lines()), info.value.lines()


def test_unavailable_device_is_an_environment_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DataError, match="device 'cuda' is not available"):
        config_from("data: {name: iris}\ntrain: {device: cuda}\n")


def test_defaults_resolve_from_the_task():
    clf = config_from("data: {name: iris}\n")
    reg = config_from("data: {name: diabetes}\n")
    assert (clf.loss.name, clf.study.metric, clf.study.direction) == ("cross_entropy", "val_accuracy", "maximize")
    assert (reg.loss.name, reg.study.metric, reg.study.direction) == ("mse", "val_rmse", "minimize")


CNN = """
data: {name: digits, as_images: true}
model: {name: cnn, channels: [4, 8], norm: none}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
train: {epochs: 2, batch_size: 64, precision: PRECISION}
"""


@pytest.mark.parametrize(
    "device, precision, model, expected",
    [
        ("cuda", "bf16", "cnn", True),
        ("cuda", "fp16", "cnn", True),
        ("cuda", "fp32", "cnn", False),  # no tensor-core kernels to feed
        ("cpu", "bf16", "cnn", False),
        ("cuda", "bf16", "mlp", False),  # nothing to convolve
    ],
)
def test_channels_last_only_for_convolutions_under_autocast_on_a_gpu(device, precision, model, expected):
    import torch

    from tunekit.train.build import build_model, channels_last_helps, load_data

    text = CNN.replace("PRECISION", precision).replace("name: cnn, channels: [4, 8], norm: none", f"name: {model}")
    # fp16 in the config is a config error on a CPU machine: build with bf16, ask about fp16.
    config = config_from(text.replace("precision: fp16", "precision: bf16"))
    built = build_model(config, load_data(config))
    assert channels_last_helps(built, torch.device(device), precision) is expected


def test_channels_last_trains_the_same_model():
    """The GPU path's layout change is checked on the CPU: same values, same training, NHWC memory."""
    import torch

    from tunekit.train.build import build_run, to_channels_last
    from tunekit.train.trainer import fit

    config = config_from(CNN.replace("PRECISION", "fp32"))
    plain = build_run(config, torch.device("cpu"), seed=1)
    nhwc = build_run(config, torch.device("cpu"), seed=1)
    nhwc.model, nhwc.split = to_channels_last(nhwc.model, nhwc.split)
    assert nhwc.split.X_train.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(nhwc.split.X_train, plain.split.X_train)
    assert nhwc.split.X_train[torch.tensor([3, 1])].is_contiguous(memory_format=torch.channels_last)  # batches keep it
    a = fit(plain, seed=1, monitor="val_accuracy", direction="maximize")
    b = fit(nhwc, seed=1, monitor="val_accuracy", direction="maximize")
    assert [r.metrics["train_loss"] for r in a.history] == pytest.approx(
        [r.metrics["train_loss"] for r in b.history], rel=1e-4
    )


def test_warm_up_pays_a_fresh_processs_one_time_costs_and_never_raises():
    import subprocess
    import sys

    from tests.conftest import REPO

    # In a fresh process, as a spawned --workers worker is: afterwards the lazy import that the
    # first optimizer makes is done and the data is cached, so the first trial does neither.
    code = (
        "import sys\nfrom tunekit.config.load import load_config\nfrom tunekit.train.build import warm_up\nfrom tunekit.components import data\n"
        "config = load_config('configs/quickstart.yaml')\n"
        "before = 'torch._dynamo' in sys.modules, len(data._CACHE)\n"
        "warm_up(config, 'cpu')\n"
        "print(before, ('torch._dynamo' in sys.modules, len(data._CACHE)))\n"
        "warm_up(config, 'cuda:7')\n"  # a device this machine lacks: the trial reports it, warm-up stays silent
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split("\n")
    assert out[0] == "(False, 0) (True, 1)" and out[1] == "ok"
