"""User code as data loader or model, only with --allow-plugin."""

import json
import textwrap

import pytest

from tunekit.config.sections import ALLOWED_PLUGINS

PLUGIN = """
import numpy as np
import torch
from torch import nn

def load(seed, n: int = 200):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)

def build(input_shape, n_outputs, width: int = 8):
    model = nn.Sequential(nn.Linear(input_shape[0], width), nn.ReLU())
    model.add_module("head", nn.Linear(width, n_outputs))
    return model

def broken(seed):
    raise RuntimeError("the plugin's own bug")
"""

CONFIG = """\
name: plug
data: {name: "tkplug.mod:load", n: 300}
model: {name: "tkplug.mod:build", width: 12}
optimizer: {name: adam, lr: 0.03}
train: {epochs: 15}
study: {trials: 2, pruner: {name: none}}
search:
  model.width: {low: 4, high: 16}
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    pkg = tmp_path / "tkplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "plug.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    ALLOWED_PLUGINS.discard("tkplug")


def test_plugins_need_permission(cli, plugin_dir):
    result = cli("validate", "plug.yaml")
    assert result.exit_code == 3
    assert (
        "plug.yaml:2: data.name: 'tkplug.mod:load' is user code, and importing it runs it (hint: pass --allow-plugin tkplug to allow it)"
        in result.stderr
    )
    assert "plug.yaml:3: model.name:" in result.stderr


def test_plugin_data_and_model_train_in_a_study(cli, plugin_dir):
    result = cli("search", "plug.yaml", "--allow-plugin", "tkplug", "--runs", plugin_dir / "runs", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["states"]["COMPLETE"] == 2 and summary["best"]["value"] > 0.8


def test_plugin_arguments_are_checked_and_plugin_errors_reported(cli, plugin_dir):
    (plugin_dir / "plug.yaml").write_text(CONFIG.replace("width: 12", "widht: 12"))
    result = cli("validate", "plug.yaml", "--allow-plugin", "tkplug")
    assert (
        result.exit_code == 3
        and "model.widht: unknown key for model 'tkplug.mod:build' (hint: did you mean 'width'?)" in result.stderr
    )
    (plugin_dir / "plug.yaml").write_text(
        CONFIG.replace("tkplug.mod:load", "tkplug.mod:broken").replace(", n: 300", "")
    )
    result = cli("validate", "plug.yaml", "--allow-plugin", "tkplug")
    assert result.exit_code == 4 and "RuntimeError: the plugin's own bug" in result.stderr
