"""Datasets and the split every trial shares."""

import os
import re

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tunekit.components.data import DATASETS, RawData, fingerprint, infer_task, load_split, prepare, split_indices
from tunekit.errors import ConfigError, DataError


def test_stratified_split_sizes_and_train_statistics():
    split = load_split("digits", {}, 0.2, 0.2, True, seed=0)
    assert (len(split.X_train), len(split.X_val), len(split.X_test)) == (1078, 360, 359)
    assert split.n_classes == 10 and split.input_shape == (64,)
    # standardized with training statistics only: train columns have mean ~0, others need not
    assert split.X_train.mean(0).abs().max() < 1e-4
    counts = torch.bincount(split.y_val, minlength=10).float()
    assert counts.min() >= 33 and counts.max() <= 38  # stratified: every digit ~36 times


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer", "diabetes"])
def test_bundled_sets_read_without_scikit_learn_equal_its_loaders(name):
    import sklearn.datasets

    raw = DATASETS.get(name)(seed=0)
    X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    assert raw.X.shape == X.shape and np.allclose(raw.X, X, rtol=0, atol=1e-12) and np.array_equal(raw.y, y)


def test_a_study_on_bundled_data_never_imports_scikit_learn():
    import subprocess
    import sys

    code = (
        "import sys\nfrom tunekit.config.load import load_config\nfrom tunekit.train.build import check_buildable\n"
        "check_buildable(load_config('configs/quickstart.yaml'))\nprint(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "counts, n_hold, held",
    [
        ([50, 30, 5], 17, [10, 6, 1]),  # proportional shares, rounded by largest remainder
        ([100, 1000], 220, [20, 200]),
        ([2, 2, 2], 3, [1, 1, 1]),  # every class keeps a row on each side
        ([5, 5], 9, None),  # a side would lose a class: plain shuffle
        ([1, 10], 3, None),  # a class of one row cannot be stratified
    ],
)
def test_split_indices_stratifies_where_it_can(counts, n_hold, held):
    y = np.repeat(np.arange(len(counts)), counts)
    keep, hold = split_indices(y, n_hold, seed=3, stratify=True)
    assert len(hold) == n_hold and sorted(np.concatenate([keep, hold]).tolist()) == list(range(len(y)))
    if held is not None:
        assert np.bincount(y[hold], minlength=len(counts)).tolist() == held
    again = split_indices(y, n_hold, seed=3, stratify=True)
    assert np.array_equal(again[0], keep) and np.array_equal(again[1], hold)
    other = split_indices(y, n_hold, seed=4, stratify=True)
    assert not np.array_equal(other[1], hold)


def test_same_seed_same_split_other_seed_other_split():
    a = prepare(DATASETS.get("iris")(seed=0), 0.2, 0.2, True, seed=0)
    b = prepare(DATASETS.get("iris")(seed=0), 0.2, 0.2, True, seed=0)
    c = prepare(DATASETS.get("iris")(seed=0), 0.2, 0.2, True, seed=1)
    assert torch.equal(a.X_val, b.X_val) and not torch.equal(a.X_val, c.X_val)


def test_regression_targets_are_scaled_back_for_metrics():
    split = load_split("diabetes", {}, 0.2, 0.2, True, seed=0)
    assert split.task == "regression" and split.y_train.shape[1] == 1
    assert abs(float(split.y_train.std()) - 1.0) < 0.01 and split.y_scale > 50


def test_digits_as_images():
    split = load_split("digits", {"as_images": True}, 0.2, 0.2, True, seed=0)
    assert split.X_train.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize(
    "name", ["moons", "circles", "blobs", "classification", "regression", "iris", "wine", "breast_cancer"]
)
def test_every_builtin_dataset_loads(name):
    split = load_split(name, {}, 0.2, 0.2, True, seed=0)
    assert len(split.X_train) > len(split.X_val) > 0


def test_csv_with_string_labels(tmp_path):
    path = tmp_path / "d.csv"
    rows = ["a,b,label"] + [f"{i},{i % 3},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    split = load_split("csv", {"path": str(path), "target": "label"}, 0.25, 0.25, True, seed=0)
    assert split.n_classes == 2 and split.input_shape == (2,)


@pytest.mark.parametrize(
    "content, args, fragment",
    [
        (None, {"target": "y"}, "data file not found"),
        ("", {"target": "y"}, "data file is empty"),
        ("a,y\n1,0\n2,1\n", {"target": "z"}, "no column 'z'"),
        ("a,y\nx,0\n2,1\n", {"target": "y"}, "d.csv row 2, column 'a': 'x' is not a number"),
        ("a,y\n" + "1,0\nnan,1\n" * 10, {"target": "y"}, "d.csv row 3, column 'a': 'nan' is NaN"),
        ("a,y\n" + "1,0\n" * 20, {"target": "y"}, "holds one value, .0., in every row"),
    ],
)
def test_bad_csv_files(tmp_path, content, args, fragment):
    path = tmp_path / "d.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=fragment):
        load_split("csv", {"path": str(path), **args}, 0.2, 0.2, True, seed=0)


def test_npz_with_its_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        X=rng.normal(size=(50, 3)),
        y=rng.integers(0, 2, 50),
        Xt=rng.normal(size=(10, 3)),
        yt=rng.integers(0, 2, 10),
    )
    split = load_split("npz", {"path": str(path), "X_test": "Xt", "y_test": "yt"}, 0.2, 0.2, True, seed=0)
    assert len(split.X_test) == 10 and len(split.X_train) == 40


def test_empty_split_is_refused():
    with pytest.raises(DataError, match="leaves an empty set"):
        prepare(RawData(np.zeros((3, 2)), np.array([0, 1, 0]), "classification"), 0.1, 0.1, True, seed=0)


# --- the task of a file's target (README, "Your own data") ------------------------------------


@pytest.mark.parametrize(
    "y, task",
    [
        (np.array(["cat", "dog", "cat"]), "classification"),  # labels that are not numbers
        (np.array([True, False, True]), "classification"),
        (np.arange(300) % 20, "classification"),  # 20 distinct integers: classes
        (np.arange(300.0) % 3, "classification"),  # whole numbers stored as floats count as integers
        (np.array([0.5, 1.0, 1.5, 1.0]), "regression"),  # any fraction: a quantity
        (np.linspace(100.0, 900.0, 800) + 0.25, "regression"),  # 800 prices: not 800 classes
        (np.arange(100) % 21, "regression"),  # 21 distinct integers, 21% of the rows
        (np.arange(1000) % 51, "regression"),  # 51 distinct, 5.1% of the rows
        (np.arange(1000) % 50, None),  # 50 distinct, each 20 times (5%): classes or levels? ask
    ],
)
def test_task_inference_rule(y, task):
    assert infer_task(y) == task


def _csv(tmp_path, text: str) -> str:
    path = tmp_path / "d.csv"
    path.write_text(text)
    return str(path)


def test_csv_task_is_inferred_from_the_target(tmp_path):
    rows = "".join(f"{i % 7},{i % 5},{100 + i * 1.37:.2f}\n" for i in range(200))
    path = _csv(tmp_path, "rooms,age,price\n" + rows)
    split = load_split("csv", {"path": path, "target": "price"}, 0.2, 0.2, True, seed=0)
    assert split.task == "regression" and split.n_classes is None
    assert split.feature_names == ["rooms", "age"]
    forced = load_split("csv", {"path": path, "target": "rooms", "task": "regression"}, 0.2, 0.2, True, seed=0)
    assert forced.task == "regression" and forced.feature_names == ["age", "price"]


def test_csv_ambiguous_target_asks_for_data_task(tmp_path):
    path = _csv(tmp_path, "a,code\n" + "".join(f"{i % 7},{i % 50}\n" for i in range(1000)))
    with pytest.raises(ConfigError) as err:
        load_split("csv", {"path": path, "target": "code"}, 0.2, 0.2, True, seed=0)
    assert err.value.problems[0].path == "data.task"
    assert "data.task: classification or data.task: regression" in err.value.problems[0].hint
    split = load_split("csv", {"path": path, "target": "code", "task": "classification"}, 0.2, 0.2, True, seed=0)
    assert split.n_classes == 50


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("a,b,y\n1,2,0\n\n3,,1\n", "row 4, column 'b' is empty"),  # the blank line is row 3, as in an editor
        ("a,b,y\n1,2,0\n3,4,\n", "row 3, column 'y' (the target) is empty"),
        ("a,b,y\n1,2,0\n3,4\n", "row 3: expected 3 fields like the header, got 2"),
        ("a,b,y\n1,inf,0\n", "row 2, column 'b': 'inf' is infinite"),
        ("a,b,y\n1,2,0.5\n1,2,nan\n", "row 3, column 'y' (the target): 'nan' is not a finite number"),
    ],
)
def test_csv_errors_name_row_and_column(tmp_path, text, fragment):
    with pytest.raises(DataError, match=re.escape(fragment)):
        load_split("csv", {"path": _csv(tmp_path, text), "target": "y"}, 0.2, 0.2, True, seed=0)


def test_csv_regression_target_that_is_not_a_number(tmp_path):
    path = _csv(tmp_path, "a,y\n1,2.5\n2,abc\n")
    with pytest.raises(DataError, match=re.escape("row 3, column 'y' (the target): 'abc' is not a number")):
        load_split("csv", {"path": path, "target": "y", "task": "regression"}, 0.2, 0.2, True, seed=0)


def test_csv_with_two_columns_of_one_name_is_refused(tmp_path):
    path = _csv(tmp_path, "a,b,a,y\n1,2,3,0\n4,5,6,1\n")
    with pytest.raises(DataError, match=re.escape("columns 1 and 3 are both named 'a'")):
        load_split("csv", {"path": path, "target": "y"}, 0.2, 0.2, True, seed=0)


def test_csv_target_with_one_value_is_refused_with_its_name(tmp_path):
    path = _csv(tmp_path, "a,y\n1,yes\n2,yes\n3,yes\n")
    with pytest.raises(DataError, match=re.escape("column 'y' (the target) holds one value, 'yes', in every row")):
        load_split("csv", {"path": path, "target": "y"}, 0.2, 0.2, True, seed=0)


def test_npz_task_is_inferred(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.normal(size=(60, 2)), y=rng.normal(size=60))
    assert load_split("npz", {"path": str(path)}, 0.2, 0.2, True, seed=0).task == "regression"


def test_npz_with_text_features_names_the_file_and_array(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.array([["a", "b"]] * 20), y=np.arange(20) % 2)
    with pytest.raises(DataError, match=re.escape(f"{path}: array 'X' holds <U1 values, not numbers")):
        load_split("npz", {"path": str(path)}, 0.2, 0.2, True, seed=0)


def test_fingerprint_sees_content_not_just_the_clock(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,y\n1,0\n")
    first = fingerprint(str(path))
    assert set(first) == {"path", "size", "mtime_ns", "sha256"}
    os.utime(path, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    assert fingerprint(str(path), first)["sha256"] == first["sha256"]
    path.write_text("a,y\n2,0\n")  # same size, new bytes
    assert fingerprint(str(path))["sha256"] != first["sha256"]


def test_csv_header_from_excel_with_a_bom_and_spaces(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufeffrooms, price\n".encode() + b"".join(f"{i % 4},{i % 2}\n".encode() for i in range(40)))
    split = load_split("csv", {"path": str(path), "target": "price"}, 0.2, 0.2, True, seed=0)
    assert split.feature_names == ["rooms"] and split.n_classes == 2
