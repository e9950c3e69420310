"""Nothing lost, nothing hangs: SIGKILL at chosen and at random moments, a full disk, a torn journal,
then a rerun of the same command. After each rerun: the run ends within a bounded time, 0 RUNNING,
the exact total, no completed trial duplicated or lost, a readable journal, an intact model.pt.

Short in CI; TUNEKIT_LONG_FAULTS=1 (`make bench`) runs many more random kills and disk sizes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import TINY

TUNEKIT = [sys.executable, "-m", "tunekit"]
LONG = bool(os.environ.get("TUNEKIT_LONG_FAULTS"))
RERUN_TIMEOUT_S = 120  # a rerun after any kill must finish well within this (a lock left behind hung forever)
CONFIG = TINY.replace("trials: 3", "trials: 5")
TOTAL = 5


def tunekit(cwd: Path, *args, fault: str | None = None, timeout: float = RERUN_TIMEOUT_S):
    env = (
        {**os.environ, "TUNEKIT_FAULT": fault}
        if fault
        else {k: v for k, v in os.environ.items() if k != "TUNEKIT_FAULT"}
    )
    return subprocess.run(
        [*TUNEKIT, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def kill_after(cwd: Path, delay: float, *args) -> None:
    """Start `tunekit ARGS` and SIGKILL it after `delay` seconds (or let it finish first)."""
    proc = subprocess.Popen([*TUNEKIT, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def completed(journal: Path) -> dict[int, dict]:
    """The completed trials in the journal, read with plain Optuna: number -> params."""
    study = optuna.load_study(
        study_name="tiny",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    return {t.number: t.params for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


def assert_whole(cwd: Path, before: dict[int, dict]) -> dict:
    """Rerun the search to its end and check the study is whole."""
    rerun = tunekit(cwd, "search", "c.yaml", "--runs", "runs", "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["states"]["RUNNING"] == 0
    assert summary["states"]["COMPLETE"] == TOTAL  # exact: nothing in this config fails
    # The header counts what is done: a killed run's RUNNING trial is not (it is recovered and run again).
    assert f"{len(before)}/{TOTAL} trials done" in rerun.stderr, rerun.stderr
    after = completed(cwd / "runs" / "tiny" / "optuna.journal")
    assert all(after.get(n) == p for n, p in before.items())  # no completed trial lost or changed
    assert len(after) == TOTAL
    return summary


@pytest.fixture
def study_cwd(tmp_path) -> Path:
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path


@pytest.mark.parametrize(
    "fault",
    ["0:create:sigkill", "1:ask:sigkill", "1:2:sigkill", "1:tell:sigkill"],
    ids=["study-creation", "between-ask-and-claim", "mid-epoch", "mid-tell"],
)
def test_sigkill_at_a_chosen_moment_then_the_rerun_finishes_whole(study_cwd, fault):
    first = tunekit(study_cwd, "search", "c.yaml", "--runs", "runs", fault=fault)
    assert first.returncode == -signal.SIGKILL, first.stderr
    started = time.monotonic()
    summary = assert_whole(study_cwd, completed(study_cwd / "runs" / "tiny" / "optuna.journal"))
    assert time.monotonic() - started < 60
    killed = [t["number"] for t in summary["trials"] if t["reason"] == "worker_died"]
    # Killed before its tell, trial 1 is run again; killed after, its result stands.
    assert killed == ([1] if fault in ("1:ask:sigkill", "1:2:sigkill") else [])


def test_a_lock_left_by_a_killed_writer_never_blocks_a_relative_runs(study_cwd):
    assert tunekit(study_cwd, "search", "c.yaml", "--runs", "runs", "--trials", "1").returncode == 0
    folder = study_cwd / "runs" / "tiny"
    # What Optuna's default lock leaves when its holder is killed: a link whose relative target
    # does not resolve from inside the folder. tunekit's own lock is an flock, which dies with its holder.
    (folder / "optuna.journal.lock").symlink_to("runs/tiny/optuna.journal")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from tunekit.study.storage import _FlockLock; "
            "_FlockLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)",
            str(folder / "optuna.journal"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    assert_whole(study_cwd, completed(folder / "optuna.journal"))
    assert time.monotonic() - started < 60


def test_sigkill_at_random_moments_with_a_relative_runs(study_cwd):
    rng = random.Random(int(os.environ.get("TUNEKIT_FAULT_SEED", "18")))
    journal = study_cwd / "runs" / "tiny" / "optuna.journal"
    seen: dict[int, dict] = {}
    for _ in range(30 if LONG else 3):
        kill_after(study_cwd, rng.uniform(0.5, 6.0), "search", "c.yaml", "--runs", "runs")
        if journal.exists():
            now = completed(journal)  # readable after every kill
            assert all(now.get(n) == p for n, p in seen.items())
            seen = now
    assert_whole(study_cwd, seen)


def test_sigkill_during_train_best_keeps_the_previous_model(study_cwd):
    import torch

    assert tunekit(study_cwd, "search", "c.yaml", "--runs", "runs", "--trials", "2").returncode == 0
    assert tunekit(study_cwd, "train", "--best", "--runs", "runs").returncode == 0
    model = study_cwd / "runs" / "tiny" / "best" / "model.pt"
    best = model.read_bytes()
    longer = study_cwd / "runs" / "tiny" / "train" / "best-epochs-40" / "model.pt"  # --epochs: not best/'s
    rng = random.Random(7)
    for _ in range(8 if LONG else 2):
        kill_after(study_cwd, rng.uniform(1.0, 5.0), "train", "--best", "--runs", "runs", "--epochs", "40")
        if longer.exists():
            torch.load(longer, weights_only=True)  # the old one or the new one, never half of one
        assert model.read_bytes() == best
    again = tunekit(study_cwd, "train", "--best", "--runs", "runs", "--epochs", "40", "--json")
    assert again.returncode == 0, again.stderr
    assert torch.load(longer, weights_only=True)["state_dict"]


def test_killing_the_parent_of_workers_takes_the_workers_down(study_cwd):
    (study_cwd / "c.yaml").write_text(CONFIG.replace("epochs: 3", "epochs: 3000"))  # trials that would run minutes
    parent = subprocess.Popen(
        [*TUNEKIT, "search", "c.yaml", "--runs", "runs", "--workers", "2"],
        cwd=study_cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in parent.stderr:
        if "started 2 workers" in line:
            break
    time.sleep(4)  # the workers import torch and take their trials
    children = [int(p) for p in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()]
    assert len(children) >= 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.2)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not alive, "workers kept training as orphans"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def test_too_many_workers_is_a_usage_error(study_cwd):
    result = tunekit(study_cwd, "search", "c.yaml", "--runs", "runs", "--workers", "100000")
    assert result.returncode == 2 and "--workers 100000 is more than this machine can use" in result.stderr
    assert "Traceback" not in result.stderr and not (study_cwd / "runs").exists()


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")


def test_full_disk_keeps_every_trial_and_the_rerun_reaches_the_exact_total(tmp_path):
    """A small tmpfs filled to a few kB: the search stops on the full disk; after space is freed,
    the rerun reaches the exact total and the cut trial kept its slot (it is not a failure)."""
    disk = tmp_path / "disk"
    _tmpfs(disk, "4m")
    try:
        for slack_kb in [24, 48, 96, 160] if LONG else [48]:
            (disk / "c.yaml").write_text(CONFIG)
            filler = disk / "filler"
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            filler.write_bytes(b"\0" * max(0, free - slack_kb * 1024))
            first = tunekit(disk, "search", "c.yaml", "--runs", "runs")
            assert first.returncode in (0, 5), first.stderr  # 5: disk full, said in one line
            assert "Traceback" not in first.stderr
            filler.unlink()
            journal = disk / "runs" / "tiny" / "optuna.journal"
            repair = ["--repair"] if journal.exists() and not journal.read_bytes().endswith(b"\n") else []
            rerun = tunekit(disk, "search", "c.yaml", "--runs", "runs", "--json", *repair)
            assert rerun.returncode == 0, rerun.stderr
            summary = json.loads(rerun.stdout)
            assert summary["states"]["RUNNING"] == 0 and summary["states"]["COMPLETE"] == TOTAL
            assert all(t["reason"] in (None, "disk_full", "worker_died") for t in summary["trials"])
            subprocess.run(["rm", "-rf", str(disk / "runs")], check=True)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_with_workers_and_a_read_only_runs_are_one_line_each(tmp_path):
    """With --workers a full disk under a journal append is the one-process line (exit 5), not a
    worker's traceback; a read-only --runs is exit 4 naming the folder, not an internal error."""
    disk = tmp_path / "disk"
    _tmpfs(disk, "4m")
    try:
        (disk / "c.yaml").write_text(CONFIG)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * max(0, free - 48 * 1024))
        full = tunekit(disk, "search", "c.yaml", "--runs", "runs", "--workers", "2")
        assert full.returncode in (0, 5), full.stderr
        assert "Traceback" not in full.stderr and "internal error" not in full.stderr, full.stderr
        if full.returncode == 5:
            assert "error: disk full" in full.stderr or "error: [w" in full.stderr, full.stderr
        (disk / "filler").unlink()
        subprocess.run(["rm", "-rf", str(disk / "runs")], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for workers in ("1", "2"):
            ro = tunekit(disk, "search", "c.yaml", "--runs", "runs", "--workers", workers)
            assert ro.returncode == 4, ro.stderr
            assert "error: cannot write" in ro.stderr and "runs" in ro.stderr and "Traceback" not in ro.stderr, (
                ro.stderr
            )
    finally:
        subprocess.run(["umount", str(disk)], check=False)
