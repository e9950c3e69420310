"""The Tracker protocol, and `Tracking`: the trackers of one process, each called through one guard.

A tracker's failure (server unreachable, folder not writable, any exception while logging) never
fails a trial: it is reported once on stderr, naming the tracker, and that tracker is off for the
rest of this process; the study goes on. Runs are named by a key: `trial-00042`, `best`, `train`."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tunekit.errors import DataError
from tunekit.track.specs import EXTRA, TrackSpec

IMPLEMENTATIONS = {
    "mlflow": ("tunekit.track.mlflow_tracker", "MlflowTracker", "mlflow"),
    "tensorboard": ("tunekit.track.tensorboard_tracker", "TensorBoardTracker", "tensorboard"),
}


class Tracker(Protocol):
    name: str

    def study_started(self, study: str, objectives: list[tuple[str, str]], nested: bool, owner: bool) -> None:
        """Before any run: the experiment (MLflow) and, when `nested`, the study's parent run, found or made.
        `owner`: this process runs the search (not one of its workers): it ends the parent run."""

    def trial_started(self, key: str, number: int | None, params: dict[str, Any]) -> None: ...

    def epoch(self, key: str, epoch: int, metrics: dict[str, float]) -> None: ...

    def trial_ended(
        self, key: str, state: str, reason: str | None, values: dict[str, float], params: dict[str, Any]
    ) -> None:
        """state COMPLETE, PRUNED or FAIL (train: COMPLETE or STOPPED); values: the outcome's metrics, named
        `objective.<metric>` for a trial and `final.<metric>` (best-epoch val_*, test_*) for a train run."""

    def best_model(self, key: str, path: Path, number: int | None) -> None: ...

    def study_ended(self, best_number: int | None, best_values: dict[str, float], n_trials: int) -> None: ...

    def close(self, interrupted: bool) -> None:
        """Runs still open end here (as killed when `interrupted`)."""


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics record (trackers take floats; NaN/inf and text are left out)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def check_installed(specs: list[TrackSpec]) -> None:
    """Each asked tracker's package is importable, before anything is written (exit 4 with the pip hint)."""
    for spec in specs:
        module = IMPLEMENTATIONS[spec.name][2]
        try:
            importlib.import_module(module)
        except ImportError:
            raise DataError(
                f"--track {spec.name} needs the '{module}' package, which is not installed",
                f"pip install 'tunekit[{EXTRA[spec.name]}]'",
            ) from None


class Tracking:
    """The trackers one process writes to. Every call goes through `_each`, which turns a tracker's
    exception into one stderr line and switches that tracker off."""

    def __init__(self, trackers: list[Tracker], warn: Callable[[str], None]):
        self.trackers = list(trackers)
        self.warn = warn
        self.failed: list[str] = []
        # A trial's run is opened at its first epoch or its end, not when it is asked: trials are asked
        # under the study's ask lock, which a slow tracking server must not hold up for other workers.
        self.pending: dict[str, tuple[int | None, dict[str, Any]]] = {}

    @classmethod
    def open(cls, specs: list[TrackSpec], default_dirs: dict[str, Path], warn: Callable[[str], None]) -> Tracking:
        tracking = cls([], warn)
        for spec in specs:
            module, attr, _ = IMPLEMENTATIONS[spec.name]
            try:
                tracking.trackers.append(
                    getattr(importlib.import_module(module), attr)(spec.target, default_dirs.get(spec.name))
                )
            except Exception as exc:
                tracking._report(spec.name, exc)
        return tracking

    @property
    def specs_alive(self) -> list[str]:
        return [t.name for t in self.trackers]

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _report(self, name: str, exc: BaseException) -> None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.failed.append(name)
        self.warn(
            f"warning: tracking to {name} failed and is off for the rest of this run "
            f"({type(exc).__name__}: {first[:300]}); the study goes on"
        )

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:
                self.trackers.remove(tracker)
                self._report(tracker.name, exc)
                try:
                    tracker.close(True)
                except Exception:
                    pass  # already reported once: a tracker that failed stays quiet

    def study_started(
        self, study: str, objectives: list[tuple[str, str]], nested: bool = True, owner: bool = True
    ) -> None:
        self._each("study_started", study, objectives, nested, owner)

    def trial_started(self, key: str, number: int | None, params: dict[str, Any]) -> None:
        if self.trackers:
            self.pending[key] = (number, params)

    def _opened(self, key: str) -> None:
        if key in self.pending:
            number, params = self.pending.pop(key)
            self._each("trial_started", key, number, params)

    def epoch(self, key: str, epoch: int, metrics: dict[str, Any]) -> None:
        if self.trackers:
            self._opened(key)
            self._each("epoch", key, epoch, numbers(metrics))

    def trial_ended(
        self, key: str, state: str, reason: str | None, values: dict[str, Any], params: dict[str, Any]
    ) -> None:
        self._opened(key)
        self._each("trial_ended", key, state, reason, numbers(values), params)

    def best_model(self, key: str, path: Path, number: int | None) -> None:
        self._opened(key)
        self._each("best_model", key, path, number)

    def study_ended(self, best_number: int | None, best_values: dict[str, Any], n_trials: int) -> None:
        self._each("study_ended", best_number, numbers(best_values), n_trials)

    def close(self, interrupted: bool = False) -> None:
        self.pending.clear()  # asked, but never trained: retried under a new number, nothing to show
        self._each("close", interrupted)


def flat_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A concrete config as dotted params (`optimizer.lr`), without its search and tracking sections."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = node

    walk({k: v for k, v in raw.items() if k not in ("search", "tracking")}, "")
    return out


def trial_key(number: int) -> str:
    return f"trial-{number:05d}"


def shown_params(params: dict[str, Any]) -> dict[str, Any]:
    """Params as trackers take them: numbers, strings and booleans as they are, anything else as JSON text."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str) for k, v in params.items()}
