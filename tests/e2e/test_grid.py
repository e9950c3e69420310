"""Grid and brute force as a user runs them: each distinct config exactly once, whatever the
baseline, the `when:` entries, the number of runs or workers; never a crash on trial 0."""

import json
import os
import subprocess
import sys

import pytest

TUNEKIT = [sys.executable, "-m", "tunekit"]

GRID = """\
name: g
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, lr: LR}
train: {epochs: 1, batch_size: 32, grad_clip: null}
study:
  trials: TRIALS
  sampler: {name: SAMPLER}
  pruner: {name: none}
search:
  optimizer.lr: {choices: [0.001, 0.01]}
  train.batch_size: {choices: [16, 32]}
  train.grad_clip: {choices: [null, 1.0]}
"""


def tunekit(tmp_path, *args):
    return subprocess.run(
        [*TUNEKIT, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=dict(os.environ)
    )


def write(tmp_path, text, **values):
    for key, value in values.items():
        text = text.replace(key.upper(), str(value))
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def params_of(tmp_path):
    out = tunekit(tmp_path, "report", "g", "--format", "json")
    assert out.returncode == 0, out.stderr
    return [json.dumps(t["params"], sort_keys=True) for t in json.loads(out.stdout)["trials"]]


@pytest.mark.parametrize("sampler", ["grid", "bruteforce"])
def test_trials_equal_to_the_grid_cover_every_point_once(tmp_path, sampler):
    # The base (lr 0.01, batch 32, no clipping) is a grid point: it is trial 0 and counts as that point.
    result = tunekit(tmp_path, "search", write(tmp_path, GRID, lr=0.01, trials=8, sampler=sampler), "--json")
    assert result.returncode == 0, result.stderr
    seen = params_of(tmp_path)
    assert len(seen) == 8 and len(set(seen)) == 8
    first = json.loads(result.stdout)["trials"][0]["params"]
    assert first == {"optimizer.lr": 0.01, "train.batch_size": 32, "train.grad_clip": None}


def test_a_base_value_off_the_grid_is_skipped_with_a_note(tmp_path):
    result = tunekit(tmp_path, "search", write(tmp_path, GRID, lr=0.005, trials=8, sampler="grid"))
    assert result.returncode == 0, result.stderr
    assert "internal error" not in result.stderr
    assert "note: the base config is not a point of the grid (optimizer.lr" in result.stderr
    seen = params_of(tmp_path)
    assert len(seen) == 8 and len(set(seen)) == 8  # all eight points, none twice, no off-grid trial


def test_continuing_a_grid_never_repeats_and_stops_when_covered(tmp_path):
    config = write(tmp_path, GRID, lr=0.01, trials=3, sampler="grid")
    assert tunekit(tmp_path, "search", config).returncode == 0
    more = tunekit(tmp_path, "search", config, "--trials", "20")
    assert more.returncode == 0, more.stderr
    assert "has tried every point of the search space: stopping at 8 of 20 trials" in more.stderr
    seen = params_of(tmp_path)
    assert len(seen) == 8 and len(set(seen)) == 8
    again = tunekit(tmp_path, "search", config, "--trials", "30")
    assert again.returncode == 0 and len(params_of(tmp_path)) == 8
    report = tunekit(tmp_path, "report", "g")
    assert "continue with --trials" not in report.stdout  # nothing is left to continue with


def test_inactive_when_entries_do_not_multiply_the_grid(tmp_path):
    conditional = GRID.replace(
        "search:\n  optimizer.lr: {choices: [0.001, 0.01]}\n",
        "search:\n  optimizer.name: {choices: [sgd, adam]}\n"
        "  optimizer.momentum: {choices: [0.0, 0.9], when: {optimizer.name: [sgd]}}\n",
    ).replace("  train.grad_clip: {choices: [null, 1.0]}\n", "")
    config = write(tmp_path, conditional, lr=0.01, trials=20, sampler="grid")
    validated = tunekit(tmp_path, "validate", config)
    assert validated.returncode == 0 and "search space size: 6" in validated.stdout  # (2 sgd + 1 adam) x 2
    result = tunekit(tmp_path, "search", config)
    assert result.returncode == 0, result.stderr
    seen = params_of(tmp_path)
    assert len(seen) == 6 and len(set(seen)) == 6


def test_two_workers_walk_the_grid_once(tmp_path):
    config = write(tmp_path, GRID, lr=0.01, trials=8, sampler="grid")
    result = tunekit(tmp_path, "search", config, "--workers", "2")
    assert result.returncode == 0, result.stderr
    seen = params_of(tmp_path)
    assert len(seen) == 8 and len(set(seen)) == 8
