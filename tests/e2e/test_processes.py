"""Behaviour only a real process shows: start-up imports, signals, closed pipes."""

import json
import signal
import subprocess
import sys
import time

from tests.conftest import TINY

TUNEKIT = [sys.executable, "-m", "tunekit"]


def test_help_imports_neither_torch_nor_optuna():
    code = (
        "import sys; sys.argv=['tunekit','--help']\nfrom tunekit.cli import app\ntry: app()\nexcept SystemExit: pass\n"
        "print('HEAVY', [m for m in ('torch', 'optuna') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "search" in out


def test_sigterm_mid_search_keeps_the_study_and_resume_finishes_it(tmp_path):
    config = tmp_path / "slow.yaml"
    # Enough epochs that the signal lands inside a trial.
    config.write_text(
        TINY.replace("trials: 3", "trials: 4").replace("epochs: 3", "epochs: 400").replace("name: tiny", "name: slow")
    )
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [*TUNEKIT, "search", str(config), "--runs", str(runs)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    metrics = runs / "slow" / "trials" / "00001" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert time.time() < deadline and proc.poll() is None, (
            proc.stderr.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "resume with: tunekit search" in stderr

    summary = json.loads(
        subprocess.run(
            [*TUNEKIT, "report", "slow", "--runs", str(runs), "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert summary["states"] == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 1, "RUNNING": 0}
    assert summary["trials"][1]["reason"] == "interrupted"

    # The rerun retries the interrupted trial's params and completes the study to its target.
    done = subprocess.run(
        [*TUNEKIT, "search", str(config), "--runs", str(runs), "--json", "--set", "train.epochs=400"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    after = json.loads(done.stdout)
    assert after["states"]["COMPLETE"] == 4 and after["states"]["RUNNING"] == 0
    interrupted = summary["trials"][1]["params"]
    assert any(t["params"] == interrupted and t["state"] == "COMPLETE" for t in after["trials"][2:])


def test_closed_pipe_exits_quietly(tmp_path):
    from tests.conftest import REPO

    config = tmp_path / "c.yaml"
    config.write_text(TINY)
    runs = tmp_path / "runs"
    subprocess.run([*TUNEKIT, "search", str(config), "--runs", str(runs), "-q"], check=True, capture_output=True)
    cmd = f"{' '.join(TUNEKIT)} report tiny --runs {runs} --format json | head -c 10"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and result.stdout == '{\n  "study"'[:10] and "Error" not in result.stderr
