"""A trained model ready for raw inputs: `tunekit.load(path)` returns a `Predictor`.

The checkpoint says how its training data was prepared; the predictor does the same to new rows
(standardize with the training statistics, reshape to the input shape), runs the model in chunks,
and maps the outputs back to what the user's data holds: class labels as they were written, or
values in the target's own units.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunekit.config.load import validate_document
from tunekit.config.sections import allow_plugins as allow
from tunekit.config.yaml_io import Document
from tunekit.errors import DataError, StateError, TunekitError, UsageError
from tunekit.predict.checkpoint import checkpoint_path, read_checkpoint
from tunekit.runs import chosen_study, no_such_study
from tunekit.train.build import build_model_for

CHUNK_ROWS = 10_000  # rows predicted at once: bounds memory on large inputs


class Predictor:
    """`.module` is the trained nn.Module (eval mode, CPU); `predict(X)` gives labels or target-unit
    values, `predict_proba(X)` class probabilities (columns in the order of `.classes`).

    X: a numpy array or a list of rows, with the features in the order of `.feature_names` (or the
    flattened `.input_shape`); image models also take arrays of shape (n, *input_shape)."""

    def __init__(self, payload: dict[str, Any], source: str = "model.pt"):
        self.source = source
        self.payload = payload
        self.task: str = payload["task"]
        self.output: str = payload["output"]
        self.classes: list | None = payload["classes"]
        self.feature_names: list[str] | None = payload["feature_names"]
        self.target_name: str | None = payload["target_name"]
        self.input_shape: tuple[int, ...] = tuple(payload["input_shape"])
        self.n_features: int = int(payload["n_features"])
        self.versions: dict[str, str] = payload["versions"]
        self.metrics: dict[str, float] = payload["metrics"]
        pre = payload["preprocess"]
        self.mean = pre["mean"].numpy().astype(np.float64)
        self.std = pre["std"].numpy().astype(np.float64)
        scaling = payload["target_scaling"] or {"mean": 0.0, "scale": 1.0}
        self.target_mean, self.target_scale = float(scaling["mean"]), float(scaling["scale"])
        self.config = validate_document(Document(payload["config"], {}, source))
        with torch.random.fork_rng(devices=[]):  # building initializes weights: leave the caller's RNG alone
            module = build_model_for(self.config, self.input_shape, payload["n_classes"])
        module.load_state_dict(payload["state_dict"])
        self.module = module.eval()

    def __repr__(self) -> str:
        what = f"{len(self.classes)} classes" if self.classes else "regression"
        return f"<tunekit Predictor {self.config.model.name} ({what}, {self.n_features} features) from {self.source}>"

    # --- inputs -------------------------------------------------------------------------------

    def features(self, X: Any) -> np.ndarray:
        """X as a float64 (n, n_features) array, checked: rows of the right width, finite numbers."""
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("X must be numbers: a numpy array or a list of rows of numbers") from None
        if arr.ndim == 1 + len(self.input_shape) and tuple(arr.shape[1:]) == self.input_shape:
            arr = arr.reshape(len(arr), -1)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise DataError(
                f"X has shape {arr.shape}; this model takes rows of {self.n_features} features"
                + (f" (shape {self.input_shape})" if len(self.input_shape) > 1 else ""),
                "pass a 2-D array or a list of rows"
                + (f", columns in the order {', '.join(self.feature_names[:5])}..." if self.feature_names else ""),
            )
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
            raise DataError(f"X row {bad} holds NaN or infinite values", "fill in or drop the missing values")
        return arr

    # --- outputs ------------------------------------------------------------------------------

    def outputs(self, X: Any) -> np.ndarray:
        """The model's raw outputs (logits, or the standardized target) for raw inputs, in chunks."""
        arr = self.features(X)
        parts = []
        with torch.inference_mode():
            for i in range(0, len(arr), CHUNK_ROWS):
                chunk = (arr[i : i + CHUNK_ROWS] - self.mean) / self.std  # float64, as training prepared it
                x = torch.as_tensor(chunk, dtype=torch.float32).reshape(len(chunk), *self.input_shape)
                parts.append(self.module(x).float().numpy())
        if not parts:
            width = 1 if self.output != "argmax" else len(self.classes or [])
            return np.zeros((0, width), dtype=np.float32)
        return np.concatenate(parts)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns in the order of `.classes`."""
        if self.task != "classification":
            raise UsageError(
                f"{self.source} is a regression model: it has no class probabilities", "use predict (no --proba)"
            )
        return self.probabilities(self.outputs(X))

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """Class probabilities from the model's raw outputs."""
        logits = torch.as_tensor(out, dtype=torch.float64)
        if self.output == "binary":
            p = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - p, p], dim=1).numpy()
        return torch.softmax(logits, dim=1).numpy()

    def class_ids(self, out: np.ndarray) -> np.ndarray:
        """The predicted class id of each row, by the rule training's accuracy used."""
        if self.output == "binary":
            return (out[:, 0] > 0).astype(np.int64)
        return out.argmax(axis=1)

    def values(self, out: np.ndarray) -> np.ndarray:
        """Regression outputs in the target's own units."""
        return out[:, 0].astype(np.float64) * self.target_scale + self.target_mean

    def predict(self, X: Any) -> np.ndarray:
        """Class labels as the training data wrote them (strings from a CSV, say), or target-unit values."""
        out = self.outputs(X)
        if self.task == "classification":
            return np.array(self.classes, dtype=object if _mixed(self.classes) else None)[self.class_ids(out)]
        return self.values(out)


def _mixed(labels: Sequence) -> bool:
    return len({type(v) for v in labels}) > 1


def resolve_checkpoint(checkpoint: str | os.PathLike | None, study: str | None, runs: str | os.PathLike) -> Path:
    """The model.pt a command means: CHECKPOINT (a file or a folder), else runs/<study>/best/model.pt,
    else the most recent study's."""
    if checkpoint is not None and study is not None:
        raise UsageError("give either --study or a CHECKPOINT, not both", "e.g. --study quickstart")
    if checkpoint is not None:
        return checkpoint_path(checkpoint)
    study_dir = chosen_study(runs, study)
    path = study_dir.best_dir / "model.pt"
    if not path.is_file():
        if not study_dir.path.is_dir():
            raise no_such_study(runs, study_dir.name, "see `tunekit list`, or pass --runs")
        raise StateError(
            f"study '{study_dir.name}' has no trained model ({path} is missing)",
            f"run `tunekit train --best --study {study_dir.name}` first",
        )
    return path


def load(path: str | os.PathLike, *, allow_plugins: list[str] | None = None) -> Predictor:
    """A Predictor for a model.pt, a folder with one, or a study folder (runs/<study>: its best/model.pt).
    `allow_plugins`: packages whose plugins (`pkg.module:build`) the config names, as `--allow-plugin`."""
    allow(allow_plugins)
    return open_predictor(checkpoint_path(path))


def open_predictor(path: Path) -> Predictor:
    """The Predictor of one model.pt; a file that is not a whole tunekit checkpoint (text, empty, a
    key missing or of the wrong type) is a one-line error naming it, whatever inside it is wrong."""
    try:
        return Predictor(read_checkpoint(path), str(path))
    except TunekitError:
        raise
    except Exception as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise DataError(
            f"{path} is not a readable tunekit checkpoint ({type(exc).__name__}: {detail})",
            "give a model.pt written by `tunekit train`, or retrain",
        ) from None
