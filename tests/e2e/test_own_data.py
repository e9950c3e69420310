"""A user's own CSV through the real CLI: read as the user meant it (README, "Your own data").

The task follows from the target column, errors name the row and column as a spreadsheet shows
them, `data.path` is read from the config's folder and written absolute into every trial config,
and a study refuses to continue on a data file whose content changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

CONFIG = """\
name: {name}
seed: 0
data: {{name: csv, path: {path}, target: {target}}}
model: {{name: mlp, hidden: [8]}}
train: {{epochs: 1, batch_size: 32}}
study: {{trials: 2, sampler: {{name: random, seed: 0}}, pruner: {{name: none}}}}
search:
  optimizer.lr: {{low: 1e-3, high: 1e-1, log: true}}
"""


def tunekit(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tunekit", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def houses(path: Path, rows: int = 200, seed: int = 0) -> Path:
    """A regression CSV: a float price with as many distinct values as rows."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    price = 250 + 40 * X[:, 0] - 15 * X[:, 1] + rng.normal(size=rows)
    lines = ["rooms,area,age,price"] + [f"{a:.3f},{b:.3f},{c:.3f},{p:.2f}" for (a, b, c), p in zip(X, price)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(folder: Path, data: str, target: str, name: str = "own") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "c.yaml"
    path.write_text(CONFIG.format(name=name, path=data, target=target))
    return path


def test_a_float_target_is_regression(tmp_path):
    houses(tmp_path / "houses.csv")
    write_config(tmp_path, "houses.csv", "price")
    result = tunekit("search", "c.yaml", "--trials", "2", "--json", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["metric"] == "val_rmse" and summary["direction"] == "minimize"
    assert summary["states"]["COMPLETE"] == 2 and summary["best"]["value"] > 0
    report = tunekit("report", "own", "--json", cwd=tmp_path)
    assert report.returncode == 0 and json.loads(report.stdout)["metric"] == "val_rmse"


def test_validate_shows_task_classes_and_feature_columns(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(12)]
    lines = [",".join([*names, "species"])]
    lines += [",".join([*(f"{v:.3f}" for v in rng.normal(size=12)), ("setosa", "virginica", "versicolor")[i % 3]])
              for i in range(90)]  # fmt: skip
    (tmp_path / "flowers.csv").write_text("\n".join(lines) + "\n")
    write_config(tmp_path, "flowers.csv", "species")
    text = tunekit("validate", "c.yaml", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert (
        "data: csv flowers.csv: classification (inferred), 3 classes; "
        "12 feature columns: f0, f1, f2, f3, f4, f5, f6, f7, ... (+4 more)" in text.stdout
    )
    data = json.loads(tunekit("validate", "c.yaml", "--json", cwd=tmp_path).stdout)["data"]
    assert data["task"] == "classification" and data["n_classes"] == 3
    assert data["feature_columns"] == names and data["n_features"] == 12
    assert data["path"] == str(tmp_path / "flowers.csv")


@pytest.mark.parametrize(
    "cell, message",
    [
        (
            "",
            "error: data.path: d.csv row 7, column 'age' is empty "
            "(hint: fill in the missing values, or drop those rows or that column)",
        ),
        (
            "abc",
            "error: data.path: d.csv row 7, column 'age': 'abc' is not a number "
            "(hint: encode categorical columns as numbers first, e.g. a 0/1 column per category, or drop the column)",
        ),
    ],
)
def test_a_bad_cell_is_named_by_row_and_column(tmp_path, cell, message):
    rows = [f"{i},{20 + i},{i % 2}" for i in range(30)]
    rows[5] = f"5,{cell},1"  # the sixth data row: row 7 under the header
    (tmp_path / "d.csv").write_text("\n".join(["rooms,age,y", *rows]) + "\n")
    write_config(tmp_path, "d.csv", "y")
    result = tunekit("search", "c.yaml", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.strip() == message
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_a_missing_target_column_names_the_columns(tmp_path):
    houses(tmp_path / "houses.csv", rows=30)
    write_config(tmp_path, "houses.csv", "prize")
    result = tunekit("validate", "c.yaml", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.strip() == (
        "error: data.path: houses.csv has no column 'prize' (data.target) "
        "(hint: did you mean 'price'? the columns are: rooms, area, age, price)"
    )


def test_an_ambiguous_target_asks_for_data_task(tmp_path):
    (tmp_path / "d.csv").write_text("a,code\n" + "".join(f"{i % 7},{i % 50}\n" for i in range(1000)))
    write_config(tmp_path, "d.csv", "code")
    result = tunekit("validate", "c.yaml", cwd=tmp_path)
    assert result.returncode == 3
    assert "data.task: cannot tell whether target 'code' is classes or a quantity" in result.stderr
    assert "(hint: set data.task: classification or data.task: regression)" in result.stderr
    fixed = tunekit("validate", "c.yaml", "--set", "data.task=classification", cwd=tmp_path)
    assert fixed.returncode == 0 and "classification, 50 classes" in fixed.stdout


def test_data_path_is_read_from_the_config_folder_and_trial_configs_run_anywhere(tmp_path):
    project, elsewhere, third = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "third"
    elsewhere.mkdir()
    third.mkdir()
    write_config(project, "houses.csv", "price")
    houses(project / "houses.csv")
    runs = tmp_path / "runs"
    result = tunekit("search", "../project/c.yaml", "--runs", runs, "--trials", "2", "-q", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    absolute = str(project / "houses.csv")
    for written in (runs / "own" / "trials" / "00000" / "config.yaml", runs / "own" / "best.yaml"):
        assert f"path: {absolute}" in written.read_text()
    trained = tunekit(
        "train", runs / "own" / "trials" / "00000" / "config.yaml", "--runs", third / "runs", "--json", cwd=third
    )
    assert trained.returncode == 0, trained.stderr
    assert "test_rmse" in json.loads(trained.stdout)["metrics"]


def test_a_changed_data_file_is_refused_on_resume_unless_allowed(tmp_path):
    data = houses(tmp_path / "houses.csv")
    write_config(tmp_path, "houses.csv", "price")
    assert tunekit("search", "c.yaml", "--trials", "1", "-q", cwd=tmp_path).returncode == 0
    with data.open("a") as f:
        f.write("0.1,0.2,0.3,251.5\n")
    refused = tunekit("search", "c.yaml", "--trials", "2", "-q", cwd=tmp_path)
    assert refused.returncode == 5
    assert "error: the data file houses.csv changed since this study recorded it: size " in refused.stderr
    assert "content sha256" in refused.stderr and "--allow-data-change" in refused.stderr
    allowed = tunekit("search", "c.yaml", "--trials", "2", "--allow-data-change", "--json", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["n_trials"] == 2
    assert "note: the data file houses.csv changed" in allowed.stderr
    # The new content is the study's data now: a plain rerun continues.
    assert tunekit("search", "c.yaml", "--trials", "3", "-q", cwd=tmp_path).returncode == 0
    assert "--allow-data-change" in tunekit("search", "--help", cwd=tmp_path).stdout


def test_a_moved_project_resumes_and_another_file_is_refused(tmp_path):
    """data.path is stored absolute, so the study compares the file by content, not by its path:
    a moved project folder (or another machine on a shared --storage) resumes, other data does not."""
    old, new, elsewhere, runs = tmp_path / "old", tmp_path / "new", tmp_path / "elsewhere", tmp_path / "runs"
    write_config(old, "houses.csv", "price")
    houses(old / "houses.csv")
    assert tunekit("search", old / "c.yaml", "--runs", runs, "--trials", "1", "-q", cwd=tmp_path).returncode == 0
    old.rename(new)
    elsewhere.mkdir()
    moved = tunekit("search", "../new/c.yaml", "--runs", runs, "--trials", "2", "--json", "-q", cwd=elsewhere)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["n_trials"] == 2
    houses(new / "other.csv", seed=1)
    other = tunekit("search", new / "c.yaml", "--runs", runs, "--set", "data.path=new/other.csv", cwd=tmp_path)
    assert other.returncode == 5
    assert f"path {old / 'houses.csv'} -> {new / 'other.csv'}" in other.stderr  # the path it recorded
