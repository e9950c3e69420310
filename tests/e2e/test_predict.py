"""A trained model in use, through the real CLI: `tunekit predict`, `tunekit export`, `tunekit.load`.

Each study is a tiny real search plus `train --best`. The held-out test split is rebuilt with
tunekit's own split (`prepare` on the row numbers), so predictions on those raw rows must score
exactly what `train --best` reported: the checkpoint carries everything the raw inputs need.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

TUNEKIT = [sys.executable, "-m", "tunekit"]

CONFIG = """\
name: {name}
seed: 0
data: {data}
model: {{name: mlp, hidden: [32]}}
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 32}}
study: {{trials: 2, sampler: {{name: random, seed: 0}}, pruner: {{name: none}}}}
search:
  optimizer.lr: {{low: 3e-3, high: 3e-2, log: true}}
"""


def tunekit(*args, cwd: Path, input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*TUNEKIT, *map(str, args)], cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=300
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def held_out_rows(raw, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> np.ndarray:
    """The row numbers of the test split tunekit makes of `raw`: its own split, run on the row numbers."""
    from tunekit.components.data import RawData, prepare

    rows = RawData(np.arange(len(raw.X), dtype=np.float64)[:, None], raw.y, raw.task)
    return prepare(rows, val_fraction, test_fraction, False, seed).X_test[:, 0].numpy().astype(np.int64)


def make_study(root: Path, name: str, data: str, epochs: int = 2) -> tuple[Path, dict]:
    """A searched and retrained study: (runs folder, `train --best --json`)."""
    config = root / f"{name}.yaml"
    config.write_text(CONFIG.format(name=name, data=data, epochs=epochs))
    ok(tunekit("search", config, "--runs", root / "runs", "-q", cwd=root))
    trained = json.loads(
        ok(tunekit("train", "--best", "--study", name, "--runs", root / "runs", "--json", cwd=root)).stdout
    )
    return root / "runs", trained


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# --- data ------------------------------------------------------------------------------------


def animals_csv(path: Path) -> Path:
    """Three string classes from two informative columns and a noise column."""
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(300):
        a, b, noise = rng.normal(size=3)
        label = "cat" if a + b > 0.5 else ("dog" if a - b > 0 else "bird")
        rows.append([f"{a:.4f}", f"{b:.4f}", label, f"{noise:.4f}"])
    return write_csv(path, ["a", "b", "animal", "noise"], rows)


def houses_csv(path: Path) -> Path:
    """A regression target in units far from standardized: price = 3000·rooms + 20·area + 50000 + noise."""
    rng = np.random.default_rng(2)
    rows = []
    for _ in range(300):
        rooms, area = rng.integers(1, 8), rng.uniform(30, 200)
        price = 3000 * rooms + 20 * area + 50000 + rng.normal(0, 500)
        rows.append([int(rooms), f"{area:.2f}", f"{price:.2f}"])
    return write_csv(path, ["rooms", "area", "price"], rows)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    runs, trained = make_study(root, "digits", "{name: digits}")
    return root, runs, trained


@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    root = tmp_path_factory.mktemp("animals")
    data = animals_csv(root / "animals.csv")
    runs, trained = make_study(root, "animals", f"{{name: csv, path: {data}, target: animal}}", epochs=3)
    return root, runs, trained, data


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    root = tmp_path_factory.mktemp("houses")
    data = houses_csv(root / "houses.csv")
    runs, trained = make_study(root, "houses", f"{{name: csv, path: {data}, target: price}}", epochs=3)
    return root, runs, trained, data


def csv_test_split(data: Path, target: str, task: str):
    """The header and the raw rows (as written in the file) of the test split tunekit made of `data`."""
    from tunekit.components.data import DATASETS

    raw = DATASETS.get("csv")(seed=0, path=str(data), target=target, task=task)
    with open(data, newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, [rows[i] for i in held_out_rows(raw)]


# --- the checkpoint --------------------------------------------------------------------------


def test_model_pt_describes_itself_and_loads_weights_only(animals):
    import torch

    root, runs, _, _ = animals
    payload = torch.load(runs / "animals" / "best" / "model.pt", weights_only=True)
    assert payload["format_version"] == 1 and payload["task"] == "classification"
    assert payload["classes"] == ["bird", "cat", "dog"]  # the labels as the CSV wrote them
    assert payload["feature_names"] == ["a", "b", "noise"] and payload["target_name"] == "animal"
    assert payload["preprocess"]["standardize"] and payload["preprocess"]["mean"].shape == (3,)
    assert payload["versions"]["torch"] == torch.__version__ and payload["versions"]["tunekit"]
    assert payload["config"]["data"]["target"] == "animal" and payload["input_shape"] == [3]


def test_an_older_checkpoint_is_refused_with_the_command_that_rewrites_it(tmp_path):
    import torch

    old = tmp_path / "model.pt"
    torch.save({"state_dict": {}, "config": {}, "task": "classification", "input_shape": [4], "n_classes": 3}, old)
    result = tunekit("predict", old, "-", cwd=tmp_path, input="a,b,c,d\n1,2,3,4\n")
    assert result.returncode == 5, result.stderr
    assert "was written by an older tunekit" in result.stderr and "tunekit train --best" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


# --- predict ---------------------------------------------------------------------------------


def test_predict_on_the_test_split_reproduces_train_best_accuracy(digits):
    from tunekit.components.data import DATASETS

    root, runs, trained = digits
    raw = DATASETS.get("digits")(seed=0)
    test = held_out_rows(raw)
    np.savez(root / "test.npz", X=raw.X[test])
    out = ok(tunekit("predict", "--study", "digits", "--runs", runs, root / "test.npz", cwd=root)).stdout
    predicted = [int(r["prediction"]) for r in read_csv(out)]
    correct = sum(p == t for p, t in zip(predicted, raw.y[test].tolist()))
    assert len(predicted) == len(test) == 359
    assert correct == round(trained["metrics"]["test_accuracy"] * len(test))
    assert correct / len(test) == pytest.approx(trained["metrics"]["test_accuracy"], abs=1e-6)


def test_string_labels_round_trip_and_columns_match_by_name(animals):
    root, runs, trained, data = animals
    header, rows = csv_test_split(data, "animal", "classification")
    order = ["noise", "animal", "b", "a"]  # any order; the target column is ignored
    new = write_csv(root / "new.csv", order, [[r[header.index(c)] for c in order] for r in rows])
    out = ok(tunekit("predict", runs / "animals" / "best" / "model.pt", new, cwd=root)).stdout
    predicted = [r["prediction"] for r in read_csv(out)]
    assert set(predicted) <= {"cat", "dog", "bird"} and len(predicted) == len(rows)
    correct = sum(p == r[header.index("animal")] for p, r in zip(predicted, rows))
    assert correct == round(trained["metrics"]["test_accuracy"] * len(rows))

    proba = read_csv(ok(tunekit("predict", "--study", "animals", "--runs", runs, new, "--proba", cwd=root)).stdout)
    assert list(proba[0]) == ["bird", "cat", "dog"]  # one column per label
    for row, label in zip(proba, predicted):
        values = {k: float(v) for k, v in row.items()}
        assert math.isclose(sum(values.values()), 1.0, abs_tol=1e-6) and max(values, key=values.get) == label

    lines = ok(tunekit("predict", "--study", "animals", "--runs", runs, new, "--format", "jsonl", cwd=root)).stdout
    assert [json.loads(line)["prediction"] for line in lines.splitlines()] == predicted


def test_a_missing_or_unknown_column_is_named(animals):
    root, runs, _, data = animals
    header, rows = csv_test_split(data, "animal", "classification")
    without_b = write_csv(root / "no-b.csv", ["a", "noise"], [[r[0], r[3]] for r in rows[:3]])
    result = tunekit("predict", "--study", "animals", "--runs", runs, without_b, cwd=root)
    assert result.returncode == 4 and "has no column 'b'" in result.stderr and result.stdout == ""
    extra = write_csv(root / "extra.csv", [*header, "colour"], [[*r, "red"] for r in rows[:3]])
    result = tunekit("predict", "--study", "animals", "--runs", runs, extra, cwd=root)
    assert result.returncode == 4 and "column 'colour' the model was not trained on" in result.stderr
    bad = write_csv(root / "bad.csv", header, [rows[0], [rows[1][0], "abc", *rows[1][2:]]])
    result = tunekit("predict", "--study", "animals", "--runs", runs, bad, cwd=root)
    assert result.returncode == 4 and "row 3, column 'b': 'abc' is not a number" in result.stderr


def test_predict_is_a_pipeline_stage(animals):
    root, runs, _, data = animals
    cmd = f"cat {shlex.quote(str(data))} | {shlex.join([*TUNEKIT, 'predict', '--study', 'animals', '--runs', str(runs), '-'])}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for reader, lines in (("head -3", 3), ("true", 0)):
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"{cmd} | {reader}"], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert result.stdout.count("\n") == lines
    full = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0 and len(full.stdout.splitlines()) == 301  # the header, one line per row


def test_regression_predictions_are_in_the_target_units(houses):
    root, runs, trained, data = houses
    header, rows = csv_test_split(data, "price", "regression")
    new = write_csv(root / "new.csv", header, rows)  # the price column is there, and ignored
    predicted = [
        float(r["prediction"])
        for r in read_csv(ok(tunekit("predict", "--study", "houses", "--runs", runs, new, cwd=root)).stdout)
    ]
    truth = [float(r[header.index("price")]) for r in rows]
    rmse = math.sqrt(sum((p - t) ** 2 for p, t in zip(predicted, truth)) / len(truth))
    assert rmse == pytest.approx(trained["metrics"]["test_rmse"], rel=1e-4)
    assert abs(np.mean(predicted) - np.mean(truth)) < 0.5 * np.std(truth)  # prices, not standardized values
    result = tunekit("predict", "--study", "houses", "--runs", runs, new, "--proba", cwd=root)
    assert result.returncode == 2 and "regression model" in result.stderr


# --- export ----------------------------------------------------------------------------------


def _raw_rows(data: Path, target: str) -> np.ndarray:
    with open(data, newline="") as f:
        header, *rows = list(csv.reader(f))
    keep = [i for i, h in enumerate(header) if h != target]
    return np.array([[float(r[i]) for i in keep] for r in rows[:50]], dtype=np.float32)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load
@pytest.mark.parametrize("study", ["animals", "houses"])
def test_torchscript_export_takes_raw_features_and_matches_the_checkpoint(study, animals, houses):
    import torch

    from tunekit import load

    root, runs, _, data = {"animals": animals, "houses": houses}[study]
    target = {"animals": "animal", "houses": "price"}[study]
    out = root / "model.ts"
    result = ok(tunekit("export", "--study", study, "--runs", runs, "--format", "torchscript", "-o", out, cwd=root))
    assert "verified: torch.jit.load" in result.stdout and "max abs diff" in result.stdout
    X = _raw_rows(data, target)
    exported = torch.jit.load(str(out))(torch.as_tensor(X)).numpy()
    model = load(runs / study)
    want = model.predict_proba(X) if study == "animals" else model.predict(X)[:, None]
    assert np.max(np.abs(exported - want)) <= 1e-5 + 1e-5 * np.max(np.abs(want))
    assert not list(root.glob(".model.ts.*"))  # no temporary left behind


def test_onnx_export_is_checked_by_onnxruntime(animals):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'tunekit[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'tunekit[onnx]')")
    from tunekit import load

    root, runs, _, data = animals
    out = root / "model.onnx"
    result = ok(tunekit("export", "--study", "animals", "--runs", runs, "--format", "onnx", "-o", out, cwd=root))
    assert "verified: onnxruntime" in result.stdout
    X = _raw_rows(data, "animal")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": X})[0]
    assert np.max(np.abs(got - load(runs / "animals").predict_proba(X))) <= 2e-5
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["tunekit.classes"]) == ["bird", "cat", "dog"]


def test_onnx_without_the_extra_is_a_clear_error(animals, tmp_path):
    root, runs, _, _ = animals
    hide = tmp_path / "hide"
    (hide / "onnx").mkdir(parents=True)
    (hide / "onnx" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {"PYTHONPATH": f"{hide}{os.pathsep}{REPO}"}
    result = tunekit(
        "export", "--study", "animals", "--runs", runs, "--format", "onnx", "-o", tmp_path / "m.onnx", cwd=root, env=env
    )
    assert result.returncode == 4 and "tunekit[onnx]" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


# --- train --best owns best/ -----------------------------------------------------------------


def test_pick_and_epochs_train_beside_best_never_over_it(digits):
    root, runs, _ = digits
    best = runs / "digits" / "best" / "model.pt"
    before = best.read_bytes()
    picked = json.loads(
        ok(tunekit("train", "--best", "--study", "digits", "--runs", runs, "--pick", "0", "--json", cwd=root)).stdout
    )
    assert picked["checkpoint"] == str(runs / "digits" / "train" / "pick-0" / "model.pt")
    longer = ok(tunekit("train", "--best", "--study", "digits", "--runs", runs, "--epochs", "3", "--json", cwd=root))
    assert json.loads(longer.stdout)["checkpoint"] == str(runs / "digits" / "train" / "best-epochs-3" / "model.pt")
    assert best.read_bytes() == before


# --- Python ----------------------------------------------------------------------------------


def test_tunekit_load_predicts_labels_and_probabilities(animals):
    from torch import nn

    from tunekit import load

    root, runs, _, data = animals
    model = load(runs / "animals")  # a study folder: its best/model.pt
    assert isinstance(model.module, nn.Module) and model.classes == ["bird", "cat", "dog"]
    rows = [[1.0, 1.0, 0.0], [1.0, -1.0, 0.3], [-1.0, -0.2, -0.5]]  # a, b, noise: plain lists
    labels = model.predict(rows)
    assert all(isinstance(v, str) for v in labels.tolist()) and len(labels) == 3
    proba = model.predict_proba(np.array(rows))
    assert proba.shape == (3, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert [model.classes[i] for i in proba.argmax(axis=1)] == labels.tolist()
    same = load(runs / "animals" / "best" / "model.pt").predict(rows)
    assert same.tolist() == labels.tolist()
