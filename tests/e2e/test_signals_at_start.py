"""Ctrl-C and SIGTERM in a command's first second, as a user (or a job runner) sends them: from the
moment tunekit's own code runs, a signal ends the command with 130 / 143 and one line, never a
KeyboardInterrupt traceback or a silent death by SIGTERM; and a command started with SIGINT
ignored (`tunekit search ... &` from a script) keeps ignoring it.

Where the process stands is read from /proc, not guessed from sleeps: the signals it catches
(SigCgt) and whether libtorch is mapped yet."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")

SCRIPT = Path(sys.executable).with_name("tunekit")  # the console script a user runs
TUNEKIT = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "tunekit"]

CONFIG = """\
name: early
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 40, batch_size: 16}
study:
  trials: 4
  sampler: {name: random, seed: 0}
  pruner: {name: none}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
"""


def _start(tmp_path, ignore_sigint=False):
    (tmp_path / "c.yaml").write_text(CONFIG)

    def deaf():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a non-interactive shell does for `cmd &`

    return subprocess.Popen(
        [*TUNEKIT, "search", "c.yaml", "-q"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=deaf if ignore_sigint else None,
    )


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _wait(proc, condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} first: {proc.communicate()[1][-400:]}")
        try:
            if condition(proc.pid):
                return
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("timed out waiting")


@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_before_torch_is_imported_ends_the_command_with_its_code_and_one_line(tmp_path, sig, code, name):
    proc = _start(tmp_path)
    _wait(proc, _catches_sigterm)
    # The old entry point caught SIGTERM only once the search ran, long after torch was imported.
    assert not _torch_loaded(proc.pid), "SIGTERM was answered only after torch was imported"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"interrupted ({name})" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert len(err.splitlines()) <= 2
    assert not (tmp_path / "runs" / "early" / "optuna.journal").exists()  # nothing was written


@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_while_torch_is_imported_ends_the_command_with_its_code(tmp_path, sig, code, name):
    proc = _start(tmp_path)
    _wait(proc, _torch_loaded)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err  # SIGTERM used to kill it silently (-15) until the search ran
    assert f"interrupted ({name})" in err
    assert "Traceback" not in err


def test_a_search_started_with_sigint_ignored_runs_through_ctrl_c(tmp_path):
    proc = _start(tmp_path, ignore_sigint=True)
    journal = tmp_path / "runs" / "early" / "optuna.journal"
    _wait(proc, lambda pid: journal.exists())
    while proc.poll() is None:  # a Ctrl-C meant for the foreground job, over and over, while it searches
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopping" not in err and "interrupted" not in err
    trials = sorted(p.name for p in (tmp_path / "runs" / "early" / "trials").iterdir())
    assert trials == ["00000", "00001", "00002", "00003"]
