"""`tunekit export`: a trained model as one TorchScript or ONNX graph that takes raw features.

The graph holds the preprocessing too: standardization with the training statistics before the
model, and after it softmax probabilities (classification, columns in the order of the class
labels) or the target's own units (regression). The file is written atomically, loaded back
(torch.jit.load; onnxruntime where installed) and compared with the checkpoint's predictions on
sample rows before it takes its name; a mismatch beyond the tolerance leaves no file.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tunekit.errors import DataError, UsageError
from tunekit.predict.predictor import Predictor, open_predictor, resolve_checkpoint
from tunekit.runs import write_atomic

FORMATS = ("torchscript", "onnx")
SAMPLE_ROWS = 64
# Exported outputs must match the checkpoint's: |diff| <= ATOL + RTOL * |value| on every sample.
ATOL, RTOL = 1e-5, 1e-5
ONNX_HINT = "pip install 'tunekit[onnx]'"


class RawInputModel(nn.Module):
    """Raw features in, predictions out: (x - mean) / std, the model, then probabilities or target units."""

    def __init__(self, predictor: Predictor):
        super().__init__()
        self.model = predictor.module
        self.register_buffer("mean", torch.as_tensor(predictor.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(predictor.std, dtype=torch.float32))
        self.shape = (-1, *predictor.input_shape)
        self.rule = predictor.output
        self.y_mean, self.y_scale = predictor.target_mean, predictor.target_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.flatten(1) - self.mean) / self.std
        out = self.model(x.reshape(self.shape)).float()
        if self.rule == "argmax":
            return torch.softmax(out, dim=1)
        if self.rule == "binary":
            p = torch.sigmoid(out)
            return torch.cat([1 - p, p], dim=1)
        return out * self.y_scale + self.y_mean


@dataclass
class ExportResult:
    path: str
    format: str
    bytes: int
    outputs: str  # "probabilities" or "target values"
    rows: int  # sample rows compared
    max_abs_diff: float | None  # None: no check ran (onnxruntime missing)
    verified_by: str | None
    note: str | None = None

    def lines(self) -> list[str]:
        out = [f"wrote {self.path} ({self.format}, {self.bytes:,} bytes): raw features in, {self.outputs} out"]
        if self.verified_by:
            out.append(
                f"verified: {self.verified_by} of the written file matches the checkpoint on {self.rows} sample rows: "
                f"max abs diff {self.max_abs_diff:.2e} (tolerance {ATOL:g} + {RTOL:g} x |value|)"
            )
        if self.note:
            out.append(self.note)
        return out


def metadata(predictor: Predictor) -> dict:
    """What a consumer of the exported graph needs to read its output."""
    outputs = (
        "probabilities, one column per class in the order of `classes`"
        if predictor.task == "classification"
        else f"the target{f' ({predictor.target_name})' if predictor.target_name else ''} in its own units"
    )
    return {
        "tunekit": predictor.versions.get("tunekit"),
        "task": predictor.task,
        "input": f"float32 (batch, {predictor.n_features}) raw features"
        + (" in the order of `feature_names`" if predictor.feature_names else ""),
        "output": outputs,
        "classes": predictor.classes,
        "feature_names": predictor.feature_names,
        "input_shape": list(predictor.input_shape),
    }


def sample_rows(predictor: Predictor, n: int = SAMPLE_ROWS) -> np.ndarray:
    """Raw inputs spread like the training data (its mean and std per feature), seeded."""
    rng = np.random.default_rng(0)
    return (predictor.mean + predictor.std * rng.standard_normal((n, predictor.n_features))).astype(np.float32)


def reference(predictor: Predictor, X: np.ndarray) -> np.ndarray:
    out = predictor.outputs(X.astype(np.float64))
    if predictor.task == "classification":
        return predictor.probabilities(out)
    return predictor.values(out)[:, None]


def export_model(
    output: str | os.PathLike,
    fmt: str,
    *,
    checkpoint: str | None = None,
    study: str | None = None,
    runs: str | os.PathLike = "runs",
) -> ExportResult:
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format '{fmt}'", f"choose one of: {', '.join(FORMATS)}")
    onnx = _import_onnx() if fmt == "onnx" else None
    path = resolve_checkpoint(checkpoint, study, runs)
    predictor = open_predictor(path)
    wrapped = RawInputModel(predictor).eval().requires_grad_(False)  # an inference graph: outputs need no grad
    X = sample_rows(predictor)
    example = torch.as_tensor(X)
    info = metadata(predictor)
    output = Path(output).expanduser()
    if not output.name or output.name in (".", ".."):
        raise UsageError(f"-o {str(output)!r} names no file", "e.g. -o model.ts")
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder", f"give a file name, e.g. -o {output / 'model.ts'}")
    if output.resolve() == Path(path).resolve():
        raise UsageError(f"-o {output} is the checkpoint being exported", "write the export to another file")
    with warnings.catch_warnings():  # torch.jit and the TorchScript-based ONNX exporter warn they are deprecated
        warnings.simplefilter("ignore")
        data = _torchscript(wrapped, example, info) if fmt == "torchscript" else _onnx(onnx, wrapped, example, info)
    # Written under a temporary name, checked, then renamed: a file that fails the check never takes the name.
    unverified = output.with_name(f".{output.name}.unverified")
    write_atomic(unverified, lambda f: f.write(data), binary=True)
    try:
        got, by, note = _run_written(fmt, unverified, X)
        want = reference(predictor, X)
        diff = None
        if got is not None:
            diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
            if got.shape != want.shape or not np.all(np.abs(got - want) <= ATOL + RTOL * np.abs(want)):
                raise DataError(
                    f"export check failed: {by} of the exported model differs from the checkpoint by up to {diff:.2e} "
                    f"on {len(X)} sample rows (tolerance {ATOL:g} + {RTOL:g} x |value|); nothing written to {output}",
                    "report this model's config as a tunekit issue",
                )
        os.replace(unverified, output)
    finally:
        if unverified.exists():
            unverified.unlink()
    outputs = "probabilities" if predictor.task == "classification" else "target values"
    return ExportResult(str(output), fmt, len(data), outputs, len(X), diff, by, note)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise DataError("--format onnx needs the onnx package, which is not installed", ONNX_HINT) from None
    return onnx


def _torchscript(wrapped: nn.Module, example: torch.Tensor, info: dict) -> bytes:
    traced = torch.jit.trace(wrapped, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={"tunekit.json": json.dumps(info)})
    return buffer.getvalue()


def _onnx(onnx, wrapped: nn.Module, example: torch.Tensor, info: dict) -> bytes:
    buffer = io.BytesIO()
    kwargs = {"input_names": ["features"], "output_names": ["output"], "opset_version": 17}
    axes = {"features": {0: "batch"}, "output": {0: "batch"}}
    try:
        torch.onnx.export(wrapped, (example,), buffer, dynamo=False, dynamic_axes=axes, **kwargs)
    except TypeError:  # a torch whose exporter has no dynamo switch
        torch.onnx.export(wrapped, (example,), buffer, dynamic_axes=axes, **kwargs)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in info.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"tunekit.{key}", json.dumps(value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _run_written(fmt: str, path: Path, X: np.ndarray) -> tuple[np.ndarray | None, str | None, str | None]:
    """The written file's outputs on X, and what ran it; (None, None, why) when nothing could."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            return loaded(torch.as_tensor(X)).numpy(), "torch.jit.load", None
    try:
        import onnxruntime
    except ImportError:
        return None, None, f"not verified by onnxruntime: it is not installed ({ONNX_HINT}); onnx.checker passed"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": X})[0], "onnxruntime", None
