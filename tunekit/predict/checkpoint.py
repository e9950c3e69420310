"""model.pt, the self-describing checkpoint: weights plus everything a prediction on raw inputs needs.

The payload holds tensors and plain Python values only, so `torch.load(path, weights_only=True)`
reads it and can never run code. `FORMAT_VERSION` changes when a reader would misread an older
file; a file without it predates the format and is refused with the command that rewrites it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunekit.components.data import Split
from tunekit.components.losses import LOSSES
from tunekit.config.sections import Config
from tunekit.errors import DataError, StateError
from tunekit.runs import write_atomic
from tunekit.train.finetune import load_checkpoint
from tunekit.version import __version__

FORMAT = "tunekit.model"
FORMAT_VERSION = 1


def output_rule(loss_name: str) -> str:
    """How the model's output becomes a prediction: `argmax` of one logit per class, `binary` (one
    logit for the second class: bce_with_logits), or `value` (regression)."""
    spec = LOSSES.get(loss_name)
    if spec.task == "regression":
        return "value"
    return "binary" if loss_name == "bce_with_logits" else "argmax"


def checkpoint_payload(model: torch.nn.Module, config: Config, split: Split, metrics: dict) -> dict[str, Any]:
    """The model.pt payload: weights, preprocessing, target scaling, labels, inputs, config, versions."""
    n_features = int(np.prod(split.input_shape))
    standardized = split.x_mean is not None
    data = config.raw.get("data", {})
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "config": config.raw,
        "task": split.task,
        "output": output_rule(config.loss.name),
        "n_classes": split.n_classes,
        "classes": split.classes,
        "feature_names": split.feature_names,
        "target_name": data.get("target") if data.get("name") == "csv" else None,
        "input_shape": list(split.input_shape),
        "n_features": n_features,
        # Standardization x' = (x - mean) / std with the training split's statistics, as trained.
        "preprocess": {
            "standardize": standardized,
            "mean": torch.as_tensor(split.x_mean if standardized else np.zeros(n_features), dtype=torch.float64),
            "std": torch.as_tensor(split.x_std if standardized else np.ones(n_features), dtype=torch.float64),
        },
        # A regression model predicts (y - mean) / scale: in target units, y = out * scale + mean.
        "target_scaling": {"mean": float(split.y_mean), "scale": float(split.y_scale)}
        if split.task == "regression"
        else None,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "versions": {"tunekit": __version__, "torch": str(torch.__version__)},  # TorchVersion is not plain
    }


def save_checkpoint(path: Path, model, config: Config, split: Split, metrics: dict) -> None:
    """Write model.pt atomically: serialized fully first, so a failure cannot leave a truncated file."""
    buffer = io.BytesIO()
    torch.save(checkpoint_payload(model, config, split, metrics), buffer)
    write_atomic(path, lambda f: f.write(buffer.getvalue()), binary=True)


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A model.pt, a folder holding one (`runs/<study>/train/`), or a study folder (its best/model.pt)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / "model.pt", p / "best" / "model.pt"):
            if candidate.is_file():
                return candidate
        raise StateError(
            f"{p} holds no model.pt (nor best/model.pt)",
            "train one with `tunekit train --best`, or give the path of a model.pt",
        )
    if not p.exists():
        raise DataError(f"checkpoint not found: {p}", "give the path of a model.pt, or --study NAME")
    return p


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a model.pt (weights_only=True): the current format, or a one-line error saying why not."""
    path = checkpoint_path(path)
    payload = load_checkpoint(str(path))
    version = payload.get("format_version")
    if version is None:
        raise StateError(
            f"{path} was written by an older tunekit; it lacks what predict and export need "
            "(preprocessing statistics, labels)",
            "retrain with `tunekit train --best`",
        )
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StateError(
            f"{path} has checkpoint format {version!r}; this tunekit ({__version__}) reads up to {FORMAT_VERSION}",
            "upgrade tunekit",
        )
    return payload
