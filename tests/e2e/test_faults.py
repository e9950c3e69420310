"""Faults a long study meets: signals, crashes inside a trial, NaN, hangs, full disks, two writers.
Injected with TUNEKIT_FAULT (tunekit/study/faults.py) at a chosen trial and epoch."""

import errno
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import TINY

TUNEKIT = [sys.executable, "-m", "tunekit"]


def run_tunekit(*args, fault=None, timeout=300):
    env = {**os.environ, "TUNEKIT_FAULT": fault} if fault else dict(os.environ)
    return subprocess.run([*TUNEKIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def test_sigint_mid_trial_exits_130_and_the_rerun_completes(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY.replace("trials: 3", "trials: 4"))
    runs = tmp_path / "runs"
    first = run_tunekit("search", config, "--runs", runs, fault="1:2:sigint")
    assert first.returncode == 130, first.stderr
    assert "interrupted (SIGINT); the study is saved" in first.stderr and "resume with: tunekit search" in first.stderr
    report = json.loads(run_tunekit("report", "--runs", runs, "--format", "json").stdout)
    assert report["states"] == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 1, "RUNNING": 0}
    second = run_tunekit("search", config, "--runs", runs, "--json")
    assert second.returncode == 0, second.stderr
    after = json.loads(second.stdout)
    assert after["states"] == {"COMPLETE": 4, "PRUNED": 0, "FAIL": 1, "RUNNING": 0}  # 4 counted + the interrupted one


@pytest.mark.parametrize("action, reason", [("raise", "error"), ("nan", "nonfinite_loss"), ("oom", "oom")])
def test_a_failing_trial_fails_alone(cli, write_config, runs, monkeypatch, action, reason):
    monkeypatch.setenv("TUNEKIT_FAULT", f"1:2:{action}")
    result = cli("search", write_config(), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"] and trials[1]["reason"] == reason


def test_a_trial_hung_inside_an_epoch_is_stopped_by_the_timeout(cli, write_config, runs, monkeypatch):
    monkeypatch.setenv("TUNEKIT_FAULT", "1:1:hang")  # sleeps an hour inside trial 1's first epoch callback
    result = cli(
        "search", write_config(TINY.replace("trials: 3", "trials: 10")), "--runs", runs, "--timeout", "3s", "--json"
    )
    assert result.exit_code == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    # Its first epoch was done: it is told that epoch's value, marked as cut short, and counts.
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0]["cut_short"] is None and trials[1]["cut_short"] == "timeout" and trials[1]["best_epoch"] == 1
    first = json.loads((runs / "tiny" / "trials" / "00001" / "metrics.jsonl").read_text().splitlines()[0])
    assert trials[1]["value"] == first["val_accuracy"]
    report = cli("report", "tiny", "--runs", runs)
    assert (
        report.exit_code == 0
        and "cut short by --timeout: 1 (complete with their best epoch so far: #1)" in report.stdout
    )


def test_a_trial_hung_before_its_first_epoch_is_stopped_by_the_timeout_and_runs_again(
    cli, write_config, runs, monkeypatch
):
    monkeypatch.setenv("TUNEKIT_FAULT", "1:build:hang")  # sleeps an hour once trial 1's model is built
    result = cli(
        "search", write_config(TINY.replace("trials: 3", "trials: 10")), "--runs", runs, "--timeout", "3s", "--json"
    )
    assert result.exit_code == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    assert trials[0]["state"] == "COMPLETE" and trials[1]["reason"] == "timeout"
    assert [t["state"] for t in trials[2:]] == ["WAITING"]  # queued to run again: the budget cut it, not its config


def disk_full_for(monkeypatch, name: str) -> None:
    """Make the atomic write of files called `name` hit ENOSPC (its temp file is `.name.XXXX.tmp`)."""
    import tunekit.runs

    real_fsync = os.fsync

    def full(fd):
        if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(tunekit.runs.os, "fsync", full)


def test_full_disk_writing_best_yaml_keeps_the_previous_one(cli, write_config, runs, monkeypatch):
    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0
    best = runs / "tiny" / "best.yaml"
    before = best.read_text()
    disk_full_for(monkeypatch, "best.yaml")
    result = cli("search", write_config(), "--runs", runs, "--trials", "3")
    assert result.exit_code == 5, result.stderr
    assert "disk full while writing" in result.stderr and "previous version is intact" in result.stderr
    assert best.read_text() == before and not list(best.parent.glob(".best.yaml.*"))  # no temp file left behind
    monkeypatch.undo()
    report = json.loads(cli("report", "--runs", runs, "--format", "json").stdout)
    assert report["states"]["RUNNING"] == 0  # the trial that hit the full disk was closed, not left running


def test_full_disk_writing_a_checkpoint_keeps_the_previous_one(cli, write_config, runs, monkeypatch):
    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0
    assert cli("train", "--best", "--runs", runs).exit_code == 0
    model = runs / "tiny" / "best" / "model.pt"
    model.write_bytes(b"an earlier model")  # the same retraining would write the same bytes: tell them apart
    disk_full_for(monkeypatch, "model.pt")
    result = cli("train", "--best", "--runs", runs)
    assert result.exit_code == 5 and "disk full while writing" in result.stderr
    assert model.read_bytes() == b"an earlier model"


def test_full_disk_in_the_journal_is_a_state_error(cli, write_config, runs, monkeypatch):
    import tunekit.study.storage

    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tunekit.study.storage, "open_nofollow", full)  # every journal append
    result = cli("search", write_config(), "--runs", runs, "--trials", "2")
    assert result.exit_code == 5 and "error: disk full" in result.stderr and "Traceback" not in result.stderr
    monkeypatch.undo()
    assert cli("search", write_config(), "--runs", runs, "--trials", "2").exit_code == 0


def test_two_train_best_at_once_are_serialized(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY)
    runs = tmp_path / "runs"
    assert run_tunekit("search", config, "--runs", runs, "-q").returncode == 0
    procs = [
        subprocess.Popen(
            [*TUNEKIT, "train", "--best", "--runs", str(runs), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    import torch

    json.loads((runs / "tiny" / "best" / "metrics.json").read_text())
    torch.load(runs / "tiny" / "best" / "model.pt", weights_only=True)


def test_a_symlinked_study_folder_is_refused(cli, write_config, runs, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs.mkdir()
    (runs / "tiny").symlink_to(elsewhere)
    result = cli("search", write_config(), "--runs", runs)
    assert result.exit_code == 5 and "symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_symlink_inside_the_study_folder_is_not_followed(cli, write_config, runs, tmp_path):
    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    import shutil

    shutil.rmtree(runs / "tiny" / "trials")
    (runs / "tiny" / "trials").symlink_to(elsewhere)
    result = cli("search", write_config(), "--runs", runs, "--trials", "2")
    assert result.exit_code == 5 and "trials is a symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []
    report = json.loads(cli("report", "--runs", runs, "--format", "json").stdout)
    assert report["states"]["RUNNING"] == 0  # the refused trial was closed
