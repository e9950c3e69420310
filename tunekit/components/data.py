"""Datasets: bundled, synthetic and file-based, split once per study and kept as tensors.

A loader returns raw arrays; `prepare` turns them into a stratified train/val/test split,
standardized with training statistics only, as tensors on the target device. Every trial of a
study sees the same split (it depends on the config's `seed`, not the trial), so trials compare fairly.
"""

from __future__ import annotations

import csv as csvlib
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from tunekit.registry import did_you_mean

if TYPE_CHECKING:
    import torch

from tunekit.config.load import FILE_DATASETS  # noqa: F401 (re-exported)
from tunekit.errors import ConfigError, DataError, Problem
from tunekit.registry import Registry

Task = Literal["classification", "regression"]


@dataclass
class RawData:
    """What a loader returns. `X_test`/`y_test` are set only when the source fixes its own test split."""

    X: np.ndarray
    y: np.ndarray
    task: Task
    image_shape: tuple[int, ...] | None = None  # (C, H, W) when rows are flattened images
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    feature_names: list[str] | None = None  # a CSV's feature columns, in order


DATASETS: Registry[Callable[..., RawData]] = Registry("dataset")


# --- bundled with scikit-learn (no download) -------------------------------------------------
# The bundled sets are small text files inside scikit-learn's package. Reading them with numpy
# instead of sklearn.datasets keeps scikit-learn (and SciPy, which it imports: ~1.5 s) out of
# every search process and every --workers worker. Where the files are not where this scikit-learn
# keeps them, its own loader is used.


def _bundled_file(name: str) -> str | None:

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    return path if os.path.isfile(path) else None


def _table(name: str, header: bool, delimiter: str | None = ",") -> np.ndarray | None:
    """A bundled CSV (gzipped or not) as floats; the first line of the headed ones holds counts and class names."""
    path = _bundled_file(name)
    return None if path is None else np.loadtxt(path, delimiter=delimiter, skiprows=1 if header else 0)


@DATASETS.register("digits")
def digits(seed: int, as_images: bool = False) -> RawData:
    """8x8 handwritten digits, 10 classes, 1797 samples. `as_images` gives 1x8x8 inputs for conv models."""
    table = _table("digits.csv.gz", header=False)
    if table is None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
    else:
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
    return RawData(X, y, "classification", (1, 8, 8) if as_images else None)


def _bundled(file: str, loader_name: str, task: Task) -> Callable[..., RawData]:
    def load(seed: int) -> RawData:
        table = _table(file, header=True)
        if table is None:
            import sklearn.datasets

            X, y = getattr(sklearn.datasets, loader_name)(return_X_y=True)
        else:
            X, y = table[:, :-1], table[:, -1].astype(np.int64)
        return RawData(X, y, task)

    load.__doc__ = f"scikit-learn's bundled `{loader_name}` ({task})."
    return load


DATASETS.register("iris")(_bundled("iris.csv", "load_iris", "classification"))
DATASETS.register("wine")(_bundled("wine_data.csv", "load_wine", "classification"))
DATASETS.register("breast_cancer")(_bundled("breast_cancer.csv", "load_breast_cancer", "classification"))


@DATASETS.register("diabetes")
def diabetes(seed: int) -> RawData:
    """scikit-learn's bundled `load_diabetes` (regression), features centred and scaled as it does."""
    X, y = (
        _table("diabetes_data_raw.csv.gz", header=False, delimiter=None),
        _table("diabetes_target.csv.gz", header=False),
    )
    if X is None or y is None:
        import sklearn.datasets

        X, y = sklearn.datasets.load_diabetes(return_X_y=True)
    else:
        X = (X - X.mean(axis=0)) / X.std(axis=0) / np.sqrt(len(X))  # scikit-learn's `scaled=True`
    return RawData(X, y, "regression")


# --- synthetic (seeded by the config's seed) -------------------------------------------------


@DATASETS.register("moons")
def moons(seed: int, n_samples: int = 1000, noise: float = 0.2) -> RawData:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return RawData(X, y, "classification")


@DATASETS.register("circles")
def circles(seed: int, n_samples: int = 1000, noise: float = 0.1, factor: float = 0.5) -> RawData:
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return RawData(X, y, "classification")


@DATASETS.register("blobs")
def blobs(seed: int, n_samples: int = 1000, centers: int = 3, n_features: int = 2, cluster_std: float = 1.0) -> RawData:
    from sklearn.datasets import make_blobs

    X, y = make_blobs(
        n_samples=n_samples, centers=centers, n_features=n_features, cluster_std=cluster_std, random_state=seed
    )
    return RawData(X, y, "classification")


@DATASETS.register("classification")
def classification(
    seed: int,
    n_samples: int = 1000,
    n_features: int = 20,
    n_informative: int = 10,
    n_classes: int = 2,
    class_sep: float = 1.0,
    flip_y: float = 0.01,
) -> RawData:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        class_sep=class_sep,
        flip_y=flip_y,
        random_state=seed,
    )
    return RawData(X, y, "classification")


@DATASETS.register("regression")
def regression(
    seed: int, n_samples: int = 1000, n_features: int = 10, n_informative: int = 5, noise: float = 0.1
) -> RawData:
    from sklearn.datasets import make_regression

    X, y = make_regression(
        n_samples=n_samples, n_features=n_features, n_informative=n_informative, noise=noise, random_state=seed
    )
    return RawData(X, y, "regression")


# --- user files ------------------------------------------------------------------------------

# FILE_DATASETS (csv, npz) read the file named by `data.path`, which tunekit.config.load resolves
# against the config's folder; a study records a fingerprint of that file (see fingerprint below).

# Task inference for a target without `data.task` (README, "Your own data"): labels that are not
# numbers, and integers with at most TASK_MAX_CLASSES distinct values, are classes; a number with a
# fraction, or integers whose distinct values are both more than TASK_MAX_CLASSES and more than
# TASK_DISTINCT_SHARE of the rows, are a quantity. What is left (many integers, each repeated
# often: 50 product codes, or 50 price levels?) cannot be told from the values.
TASK_MAX_CLASSES = 20
TASK_DISTINCT_SHARE = 0.05


def infer_task(y: np.ndarray) -> Task | None:
    """The task a target column implies: classification, regression, or None when it is ambiguous."""
    y = np.asarray(y)
    if y.dtype.kind not in "iuf":  # strings, booleans, objects: labels
        return "classification"
    if y.dtype.kind == "f":
        finite = y[np.isfinite(y)]
        if np.any(np.mod(finite, 1) != 0):
            return "regression"
    distinct = len(np.unique(y))
    if distinct <= TASK_MAX_CLASSES:
        return "classification"
    if distinct > TASK_DISTINCT_SHARE * len(y):
        return "regression"
    return None


def task_unclear(what: str, y: np.ndarray) -> ConfigError:
    """The config error for a target whose task `infer_task` cannot tell: ask for data.task."""
    distinct = len(np.unique(y))
    return ConfigError(
        [
            Problem(
                "data.task",
                f"cannot tell whether {what} is classes or a quantity: {distinct} distinct whole numbers, "
                f"each repeated about {len(y) / distinct:.0f} times",
                hint="set data.task: classification or data.task: regression",
            )
        ]
    )


def shown_path(path: str) -> str:
    """A data path as messages show it: relative to the working directory when it lies below it."""
    try:
        cwd = os.getcwd()
        rel = os.path.relpath(path, cwd)
    except (ValueError, OSError):  # another drive; no working directory
        return path
    at_root = os.path.dirname(cwd) == cwd  # from /, every path is "below": keep it absolute
    return path if at_root or rel == ".." or rel.startswith(".." + os.sep) else rel


def _open_data_file(path: str) -> str:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DataError(
            f"data file not found: {shown_path(path)}",
            "a relative data.path is read from the config file's folder "
            "(from the working directory for a config on stdin or a --set value)",
        )
    if os.path.getsize(path) == 0:
        raise DataError(f"data file is empty: {shown_path(path)}")
    return path


def _some(names: list[str], limit: int = 20) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _short(value: str) -> str:
    return value if len(value) <= 40 else value[:37] + "..."


def _cell_error(where: str, rowno: int, column: str, value: str, target: bool = False) -> DataError:
    """Why one CSV cell is not a usable number, named like a spreadsheet: row (header = 1) and column."""
    cell = f"{where} row {rowno}, column '{column}'" + (" (the target)" if target else "")
    if not value.strip():
        hint = (
            "drop the rows without a target"
            if target
            else "fill in the missing values, or drop those rows or that column"
        )
        return DataError(f"{cell} is empty", hint)
    shown = _short(value)
    if target:
        return DataError(
            f"{cell}: '{shown}' is not a number", "data.task is regression; use data.task: classification for labels"
        )
    try:
        float(value)
    except ValueError:
        return DataError(
            f"{cell}: '{shown}' is not a number",
            "encode categorical columns as numbers first, e.g. a 0/1 column per category, or drop the column",
        )
    what = "NaN (a missing value)" if math.isnan(float(value)) else "infinite"
    return DataError(f"{cell}: '{shown}' is {what}", "fill in the missing values, or drop those rows")


@DATASETS.register("csv")
def csv(seed: int, path: str, target: str, task: Task | None = None, delimiter: str = ",") -> RawData:
    """A CSV file with a header row; `target` names the label column, every other column must be numeric.
    Without `task`, the target's values decide it (infer_task)."""

    path = _open_data_file(path)
    where = f"data.path: {shown_path(path)}"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            rows = list(csvlib.reader(f, delimiter=delimiter))
    except UnicodeDecodeError:
        raise DataError(f"{where} is not UTF-8 text", "save the file as UTF-8 CSV") from None
    except csvlib.Error as exc:
        raise DataError(f"{where} is not a readable CSV file ({exc})") from None
    header = [name.strip() for name in rows[0]] if rows else []  # `a, b, price` names `price`
    if not header:
        raise DataError(f"{where}: row 1 must be the header (the column names)")
    twice = next((name for i, name in enumerate(header) if name in header[:i]), None)
    if twice is not None:  # predict matches columns by name: two of one name could not be told apart
        first, second = [i + 1 for i, name in enumerate(header) if name == twice][:2]
        raise DataError(
            f"{where}: columns {first} and {second} are both named '{twice}'", "give every column its own name"
        )
    if target not in header:
        close = did_you_mean(target, header)
        raise DataError(
            f"{where} has no column '{target}' (data.target)",
            (f"{close} " if close else "") + f"the columns are: {_some(header)}",
        )
    t = header.index(target)
    columns = [name for i, name in enumerate(header) if i != t]
    features, labels, numbers = [], [], []
    for rowno, row in enumerate(rows[1:], start=2):  # numbered as in a spreadsheet: the header is row 1
        if not row:
            continue  # a blank line
        if len(row) != len(header):
            raise DataError(f"{where} row {rowno}: expected {len(header)} fields like the header, got {len(row)}")
        cells = row[:t] + row[t + 1 :]
        try:
            values = [float(v) for v in cells]
        except ValueError:
            values = []
        if len(values) != len(cells) or not all(math.isfinite(v) for v in values):
            bad = next(i for i, v in enumerate(cells) if not _finite(v))
            raise _cell_error(where, rowno, columns[bad], cells[bad])
        if not row[t].strip():
            raise _cell_error(where, rowno, target, row[t], target=True)
        features.append(values)
        labels.append(row[t])
        numbers.append(rowno)
    if not features:
        raise DataError(f"{where}: no data rows under the header")
    y = _target_values(labels)
    if len(set(labels)) < 2:
        raise DataError(
            f"{where}: column '{target}' (the target) holds one value, '{_short(labels[0])}', in every row",
            "a target needs at least two values to learn from; check --target / data.target",
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y))[0])
        raise DataError(
            f"{where} row {numbers[bad]}, column '{target}' (the target): '{labels[bad]}' is not a finite number",
            "drop the rows without a target",
        )
    if task is None:
        task = infer_task(y)
        if task is None:
            raise task_unclear(f"target '{target}'", y)
    if task == "regression" and y.dtype.kind not in "iuf":
        bad = next(i for i, v in enumerate(labels) if not _finite(v))
        raise _cell_error(where, numbers[bad], target, labels[bad], target=True)
    return RawData(np.array(features, dtype=np.float64), y, task, feature_names=columns)


def fingerprint(path: str, known: dict | None = None) -> dict:
    """A data file's size, modification time and sha256, as a study records it. `known`, an earlier
    fingerprint of the same path, spares hashing a file whose size and modification time are unchanged."""
    info = os.stat(path)
    found = {"path": path, "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    if known and all(known.get(k) == v for k, v in found.items()) and known.get("sha256"):
        return {**found, "sha256": known["sha256"]}
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {**found, "sha256": digest.hexdigest()}


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _target_values(labels: list[str]) -> np.ndarray:
    """The target column as numbers when every cell is one (whole numbers as ints), else as strings."""
    try:
        y = np.array([float(v) for v in labels])
    except ValueError:
        return np.array([v.strip() for v in labels])
    if np.isfinite(y).all() and np.all(np.mod(y, 1) == 0) and np.abs(y).max() < 2**53:
        return y.astype(np.int64)
    return y


@DATASETS.register("npz")
def npz(
    seed: int,
    path: str,
    task: Task | None = None,
    X: str = "X",
    y: str = "y",
    X_test: str | None = None,
    y_test: str | None = None,
) -> RawData:
    """A NumPy .npz archive. Name the arrays; give X_test/y_test to fix the test split yourself.
    Without `task`, the values of `y` decide it (infer_task)."""
    path = _open_data_file(path)
    try:
        archive = np.load(path, allow_pickle=False)  # pickled arrays would run code: never
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    with archive:
        names = list(archive.keys())

        def get(key: str) -> np.ndarray:
            if key not in names:
                raise DataError(f"{path}: no array '{key}'", did_you_mean(key, names) or f"arrays: {', '.join(names)}")
            return archive[key]

        X_arr, y_arr = get(X), get(y)
        Xt = get(X_test) if X_test else None
        yt = get(y_test) if y_test else None
    for key, arr in ((X, X_arr), (X_test, Xt)):
        if arr is not None and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataError(
                f"{path}: array '{key}' holds {arr.dtype} values, not numbers", "store the features as floats or ints"
            )
    if task is None:
        task = infer_task(y_arr)
        if task is None:
            raise task_unclear(f"array '{y}'", y_arr)
    image_shape = tuple(X_arr.shape[1:]) if X_arr.ndim == 4 else None
    if X_arr.ndim > 2:
        X_arr = X_arr.reshape(len(X_arr), -1)
        Xt = Xt.reshape(len(Xt), -1) if Xt is not None else None
    return RawData(X_arr, y_arr, task, image_shape, Xt, yt)


# --- from raw arrays to the split every trial uses ----------------------------------------------


@dataclass
class Split:
    """Train/val/test tensors plus what the model and metrics need to know about them."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    task: Task
    input_shape: tuple[int, ...]
    n_classes: int | None
    y_scale: float = 1.0  # regression targets are standardized; metrics multiply back to data units
    feature_names: list[str] | None = None  # a CSV's feature columns
    # What a prediction on raw inputs needs (tunekit.predict): the label of each class id as the
    # data has it, the training statistics the features were standardized with (None: not
    # standardized), and the regression target's mean (with y_scale: its standard deviation).
    classes: list | None = None
    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None
    y_mean: float = 0.0

    def to(self, device) -> Split:
        moved = {k: getattr(self, k).to(device) for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")}
        return dataclasses.replace(self, **moved)


def _check_finite(name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = (
            int((~np.isfinite(arr)).any(axis=tuple(range(1, arr.ndim))).sum())
            if arr.ndim > 1
            else int((~np.isfinite(arr)).sum())
        )
        raise DataError(f"NaN or infinite values in {bad} row(s) of the {name}", "clean or impute the data first")


def split_indices(y: np.ndarray, n_hold: int, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (kept, held out) with `n_hold` rows held out, shuffled by `seed`.

    Stratified, each class gives the held-out set its share of `n_hold` (rounded by largest
    remainder) and keeps at least one row on each side. Where that is impossible (a class of one
    row, fewer held-out rows than classes), the split is a plain shuffle."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if stratify:
        classes, labels = np.unique(y, return_inverse=True)
        counts = np.bincount(labels)
        if counts.min() >= 2 and len(classes) <= n_hold <= n - len(classes):
            take = _shares(counts, n_hold)
            hold = np.concatenate(
                [rng.permutation(np.flatnonzero(labels == c))[: take[c]] for c in range(len(classes))]
            )
            held = np.zeros(n, dtype=bool)
            held[hold] = True
            return rng.permutation(np.flatnonzero(~held)), rng.permutation(hold)
    order = rng.permutation(n)
    return order[n_hold:], order[:n_hold]


def _shares(counts: np.ndarray, total: int) -> np.ndarray:
    """`total` split across classes in proportion to `counts`, each between 1 and its count - 1."""
    exact = counts * (total / counts.sum())
    take = np.clip(np.floor(exact).astype(np.int64), 1, counts - 1)
    while take.sum() < total:  # one row at a time to the class furthest below its exact share
        room = take < counts - 1
        take[np.flatnonzero(room)[np.argmax((exact - take)[room])]] += 1
    while take.sum() > total:  # or back from the one furthest above it
        room = take > 1
        take[np.flatnonzero(room)[np.argmin((exact - take)[room])]] -= 1
    return take


def prepare(raw: RawData, val_fraction: float, test_fraction: float, standardize: bool, seed: int) -> Split:
    """Split, encode labels, standardize with train statistics, and return CPU tensors."""

    X = np.asarray(raw.X)
    y = np.asarray(raw.y)
    if X.ndim != 2 or len(X) == 0:
        raise DataError(f"expected a 2-D feature array with rows, got shape {X.shape}")
    if len(X) != len(y):
        raise DataError(f"features have {len(X)} rows but labels have {len(y)}")
    try:
        X = X.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError("features are not numeric", "give the model numbers: encode text columns first") from None
    _check_finite("features", X)

    n_classes = None
    if raw.task == "classification":
        # Any label values (strings, gapped ints) become 0..K-1; the same mapping applies to a given test set.
        classes, y = np.unique(y, return_inverse=True)
        n_classes = len(classes)
        if n_classes < 2:
            raise DataError(f"classification needs at least 2 classes, the labels hold {n_classes}")
        y_test_fixed = None
        if raw.y_test is not None:
            lookup = {c: i for i, c in enumerate(classes.tolist())}
            unknown = set(np.asarray(raw.y_test).tolist()) - set(lookup)
            if unknown:
                raise DataError(f"test labels {sorted(unknown)[:5]} never occur in the training labels")
            y_test_fixed = np.array([lookup[v] for v in np.asarray(raw.y_test).tolist()])
    else:
        y = y.astype(np.float64)
        _check_finite("targets", y)
        y_test_fixed = None if raw.y_test is None else np.asarray(raw.y_test, dtype=np.float64)

    stratify = raw.task == "classification"

    def split(Xa, ya, fraction, what):
        if fraction <= 0:
            return Xa, Xa[:0], ya, ya[:0]
        n_hold = int(round(len(Xa) * fraction))
        if n_hold < 1 or len(Xa) - n_hold < 1:
            raise DataError(
                f"{what} split of {fraction} leaves an empty set from {len(Xa)} rows",
                "use more data or another fraction",
            )
        keep, hold = split_indices(ya, n_hold, seed, stratify)
        return Xa[keep], Xa[hold], ya[keep], ya[hold]

    if raw.X_test is not None:
        X_test = np.asarray(raw.X_test, dtype=np.float64)
        _check_finite("test features", X_test)
        y_test = y_test_fixed
        X_rest, y_rest = X, y
    else:
        X_rest, X_test, y_rest, y_test = split(X, y, test_fraction, "test")
    X_train, X_val, y_train, y_val = split(
        X_rest, y_rest, val_fraction / max(1e-12, 1 - (0 if raw.X_test is not None else test_fraction)), "validation"
    )

    y_scale, y_mean, mean, std = 1.0, 0.0, None, None
    if standardize:
        mean, std = X_train.mean(0), X_train.std(0)
        std[std == 0] = 1.0  # constant columns (digits' blank corners) stay finite
        X_train, X_val, X_test = ((a - mean) / std for a in (X_train, X_val, X_test))
        if raw.task == "regression":
            y_mean, y_std = y_train.mean(), y_train.std() or 1.0
            y_train, y_val, y_test = ((a - y_mean) / y_std for a in (y_train, y_val, y_test))
            y_scale, y_mean = float(y_std), float(y_mean)

    input_shape = raw.image_shape or (X.shape[1],)

    def features(a):
        return torch.as_tensor(a, dtype=torch.float32).reshape(len(a), *input_shape)

    def labels(a):
        if raw.task == "classification":
            return torch.as_tensor(a, dtype=torch.int64)
        return torch.as_tensor(a, dtype=torch.float32).reshape(len(a), 1)

    return Split(
        features(X_train),
        labels(y_train),
        features(X_val),
        labels(y_val),
        features(X_test),
        labels(y_test),
        raw.task,
        tuple(input_shape),
        n_classes,
        y_scale,
        raw.feature_names,
        classes.tolist() if raw.task == "classification" else None,
        mean,
        std,
        y_mean,
    )


_CACHE: dict[str, Split] = {}


def load_split(
    name: str,
    args: dict,
    val_fraction: float,
    test_fraction: float,
    standardize: bool,
    seed: int,
    loader: Callable[..., RawData | tuple] | None = None,
) -> Split:
    """Load and split a dataset once per process: every trial in a worker reuses the tensors (they
    are never written to). A data file is read again when its size or modification time changes.

    A plugin loader may return RawData, or a tuple (X, y): integer labels mean classification."""

    path, stamp = args.get("path"), None
    if isinstance(path, str) and os.path.isfile(os.path.expanduser(path)):
        info = os.stat(os.path.expanduser(path))
        stamp = [info.st_mtime_ns, info.st_size]
    key = json.dumps([name, args, val_fraction, test_fraction, standardize, seed, stamp], sort_keys=True, default=str)
    if key not in _CACHE:
        raw = (loader or DATASETS.get(name))(seed=seed, **args)
        if isinstance(raw, tuple) and len(raw) == 2:
            X, y = (np.asarray(a) for a in raw)
            integral = (
                y.dtype.kind in "iub" or y.dtype.kind in "OU" or (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0))
            )
            raw = RawData(X, y, "classification" if integral else "regression")
        if not isinstance(raw, RawData):
            raise DataError(
                f"data loader '{name}' returned {type(raw).__name__}; return (X, y) arrays or tunekit.data.RawData"
            )
        _CACHE[key] = prepare(raw, val_fraction, test_fraction, standardize, seed)
    return _CACHE[key]
