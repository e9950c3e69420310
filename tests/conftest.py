"""Shared test helpers: a tiny real config, a temp runs dir, and the real CLI through Typer's runner."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# pytest-xdist's workers inherit COLUMNS=80 from their controller; tunekit honours COLUMNS off a
# terminal (a script that sets it wants that width), so tests that mean a width say so themselves.
os.environ.pop("COLUMNS", None)

# A test run started in the background (`make test &`, some CI runners) inherits SIGINT ignored,
# and so would every tunekit process the tests start: the Ctrl-C tests would see no Ctrl-C.
# A handler here becomes the default disposition in child processes, where Python installs its own.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]

# Real training, kept tiny: iris, a 16-unit MLP, 3 epochs. A trial takes ~50 ms on 2 cores.
TINY = """\
name: tiny
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 32}
study:
  trials: 3
  sampler: {name: random, seed: 0}
  pruner: {name: none}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
"""


@pytest.fixture
def write_config(tmp_path):
    def write(text: str = TINY, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def runs(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def cli():
    """Invoke the real CLI; returns the click Result with .exit_code, .stdout, .stderr separate."""
    from typer.testing import CliRunner

    from tunekit.cli import app

    runner = CliRunner()

    def invoke(*args, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


def parse_json(text: str):
    return json.loads(text)


def config_from(text: str, source: str | None = None, buildable: bool = True):
    """A config from this YAML text, checked as `tunekit validate` checks a file: sections, the
    search space and, unless `buildable=False`, the data and model it names (a ConfigError if not)."""
    # Imported here, as in `cli`: torch must load after OMP_NUM_THREADS is set above.
    from tunekit.config.load import validate_document
    from tunekit.config.yaml_io import parse_yaml
    from tunekit.train.build import check_buildable

    config = validate_document(parse_yaml(textwrap.dedent(text), source))
    return check_buildable(config) if buildable else config
