"""Experiment tracking as a user checks it: a search and `train --best` with --track, read back with
MLflow's own client (a real SQLite store) and TensorBoard's own event reader; a tracker that cannot
write is reported once and the study still succeeds."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.conftest import TINY

mlflow = pytest.importorskip("mlflow", reason="pip install 'tunekit[mlflow]' to test MLflow tracking")
pytest.importorskip("tensorboard", reason="pip install 'tunekit[tensorboard]' to test TensorBoard tracking")

from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

CONFIG = TINY.replace("name: tiny", "name: tracked").replace("epochs: 3,", "epochs: 2,")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An empty MLflow SQLite store, made once: creating its schema costs seconds, copying it nothing."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}")
    return path


@pytest.fixture
def store(empty_store, tmp_path, monkeypatch):
    """A store URI as a user gives it; MLflow puts such a store's artifacts in ./mlruns: cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    shutil.copy(empty_store, path)
    return f"sqlite:///{path}"


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mlflow_gets_one_parent_run_per_study_and_one_nested_run_per_trial(
    cli, write_config, runs, store, tmp_path, monkeypatch
):
    config = write_config(CONFIG)
    folder = "store"  # --track mlflow:DIR: DIR/mlflow.db (the store's file) and DIR/artifacts/, from the cwd
    monkeypatch.setenv("TUNEKIT_FAULT", "1:1:raise")  # trial 1 fails at its first epoch
    result = cli("search", config, "--runs", runs, "--track", f"mlflow:{folder}", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr
    summary = json.loads(result.stdout)
    monkeypatch.delenv("TUNEKIT_FAULT")

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("tracked")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    [parent] = [r for r in found if r.data.tags.get("tunekit.kind") == "study"]
    children = {r.info.run_name: r for r in found if r is not parent}
    assert parent.info.run_name == "tracked" and parent.info.status == "FINISHED"
    assert parent.data.tags["tunekit.best_trial"] == str(summary["best"]["number"])
    assert parent.data.metrics["best.val_accuracy"] == pytest.approx(summary["best"]["value"])
    assert sorted(children) == ["trial-00000", "trial-00001", "trial-00002"]
    for trial in summary["trials"]:
        run = children[f"trial-{trial['number']:05d}"]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["tunekit.trial"] == str(trial["number"])
        assert tags["tunekit.state"] == trial["state"]
        assert tags.get("tunekit.reason") == trial["reason"]
        assert run.info.status == ("FINISHED" if trial["state"] == "COMPLETE" else "FAILED")
        assert float(run.data.params["optimizer.lr"]) == pytest.approx(trial["params"]["optimizer.lr"])
        epochs = lines_of(runs / "tracked" / "trials" / f"{trial['number']:05d}" / "metrics.jsonl")
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == [e["epoch"] for e in epochs]
        assert [m.value for m in history] == pytest.approx([e["train_loss"] for e in epochs])
        if trial["state"] == "COMPLETE":
            assert run.data.metrics["objective.val_accuracy"] == pytest.approx(trial["value"])
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert len(client.get_metric_history(children["trial-00001"].info.run_id, "train_loss")) == 1

    # The best model: `train --best` is a run under the same parent, with model.pt as its artifact.
    result = cli("train", "--best", "--study", "tracked", "--runs", runs, "--track", f"mlflow:{folder}", "--json")
    assert result.exit_code == 0, result.stderr
    trained = json.loads(result.stdout)
    # Continuing the study reuses its parent run: still one, now with four trials under it.
    result = cli("search", config, "--runs", runs, "--trials", "4", "--track", f"mlflow:{store}", "-q")  # the URI form
    assert result.exit_code == 0, result.stderr

    found = client.search_runs([experiment.experiment_id])
    parents = [r for r in found if r.data.tags.get("tunekit.kind") == "study"]
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    nested = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in nested) == ["best", *(f"trial-0000{i}" for i in range(4))]
    [best] = [r for r in nested if r.info.run_name == "best"]
    assert best.data.tags["tunekit.trial"] == str(summary["best"]["number"])
    assert [a.path for a in client.list_artifacts(best.info.run_id)] == ["model.pt"]
    assert (tmp_path / "store" / "artifacts" / best.info.run_id / "artifacts" / "model.pt").is_file()
    assert best.data.metrics["final.test_accuracy"] == pytest.approx(trained["metrics"]["test_accuracy"])
    assert parents[0].data.tags["tunekit.best_model_run"] == best.info.run_id
    assert len(client.get_metric_history(best.info.run_id, "val_loss")) == trained["epochs"]


def test_tensorboard_gets_one_run_folder_per_trial_with_scalars_and_hparams(cli, write_config, tmp_path, monkeypatch):
    # The config's tracking: section, its folder read from the config file's folder (not the cwd).
    config = write_config(CONFIG + "tracking: {tensorboard: tb}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("search", config, "--runs", tmp_path / "runs", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)

    base = tmp_path / "tb" / "tracked"
    assert sorted(p.name for p in base.iterdir()) == ["trial-00000", "trial-00001", "trial-00002"]
    for trial in summary["trials"]:
        events = EventAccumulator(str(base / f"trial-{trial['number']:05d}"))
        events.Reload()
        epochs = lines_of(tmp_path / "runs" / "tracked" / "trials" / f"{trial['number']:05d}" / "metrics.jsonl")
        scalars = events.Scalars("val_accuracy")
        assert [s.step for s in scalars] == [e["epoch"] for e in epochs]
        assert [s.value for s in scalars] == pytest.approx([e["val_accuracy"] for e in epochs])
        assert events.Scalars("objective.val_accuracy")[-1].value == pytest.approx(trial["value"])
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["optimizer.lr"].number_value == pytest.approx(trial["params"]["optimizer.lr"])
        assert hparams["state"].string_value == "COMPLETE"


def test_a_tracker_that_cannot_write_is_reported_once_and_the_study_succeeds(cli, write_config, runs, tmp_path):
    config = write_config(CONFIG)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli(
        "search", config, "--runs", runs, "--json", "-q",
        "--track", f"tensorboard:{blocker}", "--track", f"mlflow:{blocker}/mlruns",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [t["state"] for t in json.loads(result.stdout)["trials"]] == ["COMPLETE"] * 3
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: tracking")]
    assert len(warnings) == 2, result.stderr
    named = sorted(line.split()[3] for line in warnings)  # "warning: tracking to NAME failed ..."
    assert named == ["mlflow", "tensorboard"]
    assert all(" failed and is off for the rest of this run (" in line for line in warnings)
    assert all(line.endswith("the study goes on") for line in warnings)
    assert blocker.read_text() == "not a folder"


def test_an_unopenable_sqlite_store_is_one_line_at_once_not_mlflows_retries(cli, write_config, runs):
    # Before: MLflow retried the engine 9 times over ~100 s, logging each retry, even under -q.
    started = time.monotonic()
    result = cli("search", write_config(CONFIG), "--runs", runs, "-q", "--track", "mlflow:sqlite:////proc/x/m.db")
    assert result.exit_code == 0, result.stderr
    assert (
        "warning: tracking to mlflow failed and is off for the rest of this run (OSError: cannot open the SQLite"
        " store /proc/x/m.db: " in result.stderr
    ), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and time.monotonic() - started < 60


def test_an_unknown_tracker_is_a_usage_error_before_anything_is_written(cli, write_config, runs):
    result = cli("search", write_config(CONFIG), "--runs", runs, "--track", "wandb")
    assert result.exit_code == 2
    assert "--track 'wandb': unknown tracker 'wandb' (trackers: mlflow, tensorboard)" in result.stderr
    assert not runs.exists()


def test_two_searches_starting_at_once_share_the_oldest_parent_run(store, monkeypatch):
    """Two machines (or a resumed search) that both find no parent run both create one: each then
    keeps the oldest and the extra one is deleted, so every trial nests under the same parent."""
    from tunekit.track.mlflow_tracker import MlflowTracker

    first, second = MlflowTracker(store), MlflowTracker(store)
    objectives = [("val_accuracy", "maximize")]
    first.study_started("race", objectives, nested=True, owner=True)
    real = MlflowTracker._find_parent
    looks = iter([None])  # the second one looked before the first one's run existed
    monkeypatch.setattr(MlflowTracker, "_find_parent", lambda self: next(looks, real(self)))
    second.study_started("race", objectives, nested=True, owner=True)
    assert second.parent == first.parent
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("race").experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [first.parent]


def test_tracking_can_be_turned_on_when_a_study_continues(cli, write_config, runs):
    """Where a study is tracked is no part of its config: adding tracking on a rerun is not a changed config."""
    config = write_config(CONFIG)
    assert cli("search", config, "--runs", runs, "--trials", "1", "-q").exit_code == 0
    result = cli("search", config, "--runs", runs, "--trials", "2", "--set", "tracking.tensorboard=true", "-q")
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in (runs / "tracked" / "tensorboard").iterdir()] == ["trial-00001"]
