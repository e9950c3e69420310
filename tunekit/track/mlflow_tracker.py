"""MLflow: one experiment per study, one parent run per study (found again by its `tunekit.study` tag, so
every worker, machine and resumed search shares it), one nested run per trial, `best` for `train --best`.

A plain path (`--track mlflow:./mlruns`) is a folder holding `mlflow.db` (SQLite) and the artifacts: MLflow 3
keeps its file store in maintenance mode. A URI (`sqlite:///…`, `http://…`, `file:…`) goes to MLflow as it is;
no target means MLflow's own default (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tunekit.track.specs import _URI
from tunekit.track.tracking import shown_params

STUDY_TAG, KIND_TAG = "tunekit.study", "tunekit.kind"
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "STOPPED": "FAILED"}


def store_of(target: str | None) -> tuple[str | None, str | None]:
    """(tracking URI, artifact folder for new experiments) for a --track mlflow target."""
    if target is None or _URI.match(target):
        return target, None
    path = Path(target)
    if path.suffix in (".db", ".sqlite"):
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", str(path.parent / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}", str(path / "artifacts")


def _open_sqlite(path: str) -> None:
    try:
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path).close()
    except (OSError, sqlite3.Error) as exc:
        raise OSError(f"cannot open the SQLite store {path[:200]}: {exc}") from None


class MlflowTracker:
    name = "mlflow"

    def __init__(self, target: str | None, default_dir: Path | None = None):
        for noisy in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." is not for our stderr
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # MLflow retries an unreachable server for ~4 minutes by default: a tracker must not hold up the
        # study that long. The user's own settings win.
        for var, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")):
            os.environ.setdefault(var, value)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        # MLflow retries a SQL store it cannot open 9 times over ~100 s, logging each: pointless for a
        # local SQLite file, so that is tried here first and its failure is the tracker's one line.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.ERROR)
        uri, self.artifacts = store_of(target)
        if uri.startswith("sqlite:///"):
            _open_sqlite(uri[len("sqlite:///") :])
        self.client = MlflowClient(tracking_uri=uri)  # opens (and for SQLite creates) the store now
        self.experiment: str | None = None
        self.study: str | None = None
        self.parent: str | None = None
        self.owner = False
        self.runs: dict[str, str] = {}  # key -> open run id

    def study_started(self, study: str, objectives: list[tuple[str, str]], nested: bool, owner: bool) -> None:
        self.study, self.owner = study, owner
        client = self.client
        found = client.get_experiment_by_name(study)
        if found is None:
            try:
                self.experiment = client.create_experiment(study, artifact_location=self.artifacts)
            except Exception:  # another worker or machine created it first
                found = client.get_experiment_by_name(study)
                if found is None:
                    raise
        self.experiment = self.experiment or found.experiment_id
        if not nested:
            return
        self.parent = self._find_parent()
        if self.parent is None:
            run = client.create_run(
                self.experiment, run_name=study, tags={STUDY_TAG: study, KIND_TAG: "study"}
            ).info.run_id
            self.parent = self._find_parent() or run
            if self.parent != run:  # two started at once: the oldest stands, ours goes
                client.delete_run(run)
        if owner:
            client.set_tag(self.parent, "tunekit.objectives", ", ".join(f"{d} {m}" for m, d in objectives))
            client.update_run(self.parent, status="RUNNING")

    def _find_parent(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment],
            filter_string=f"tags.`{KIND_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{self.study}'",
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def trial_started(self, key: str, number: int | None, params: dict[str, Any]) -> None:
        tags = {STUDY_TAG: self.study, KIND_TAG: "trial" if key.startswith("trial-") else "train"}
        if number is not None:
            tags["tunekit.trial"] = str(number)
        if self.parent is not None:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent
        run = self.client.create_run(self.experiment, run_name=key, tags=tags).info.run_id
        self.runs[key] = run
        shown = shown_params(params)
        if shown:
            self.client.log_batch(run, params=[Param(k, str(v)[:6000]) for k, v in shown.items()])

    def epoch(self, key: str, epoch: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.runs[key], metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()])

    def trial_ended(
        self, key: str, state: str, reason: str | None, values: dict[str, float], params: dict[str, Any]
    ) -> None:
        run = self.runs.pop(key, None)
        if run is None:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(
            run,
            metrics=[Metric(k, v, now, 0) for k, v in values.items()],
            tags=[_tag("tunekit.state", state), *([_tag("tunekit.reason", reason)] if reason else [])],
        )
        self.client.set_terminated(run, STATUS.get(state, "FINISHED"))

    def best_model(self, key: str, path: Path, number: int | None) -> None:
        run = self.runs.get(key)
        if run is None:
            return
        self.client.log_artifact(run, str(path))
        if self.parent is not None:
            self.client.set_tag(self.parent, "tunekit.best_model_run", run)

    def study_ended(self, best_number: int | None, best_values: dict[str, float], n_trials: int) -> None:
        if self.parent is None:
            return
        if best_number is not None:
            now = int(time.time() * 1000)
            self.client.log_batch(
                self.parent,
                metrics=[Metric(f"best.{k}", v, now, n_trials) for k, v in best_values.items()],
                tags=[_tag("tunekit.best_trial", str(best_number))],
            )
        self.client.set_terminated(self.parent, "FINISHED")

    def close(self, interrupted: bool) -> None:
        for key, run in list(self.runs.items()):
            self.client.set_tag(run, "tunekit.state", "interrupted")
            self.client.set_terminated(run, RunStatus.to_string(RunStatus.KILLED))
            del self.runs[key]
        if interrupted and self.owner and self.parent is not None:
            self.client.set_terminated(self.parent, RunStatus.to_string(RunStatus.KILLED))


def _tag(key: str, value: str) -> RunTag:
    return RunTag(key, value)
