"""Graceful stop as a user meets it: `tunekit stop` from another shell, or a first Ctrl-C, lets the
running trials finish and starts no new one (every worker); a second Ctrl-C interrupts as before."""

import json
import os
import signal
import subprocess
import sys
import time

TUNEKIT = [sys.executable, "-m", "tunekit"]

CONFIG = """\
name: stoppable
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: EPOCHS, batch_size: 16}
study:
  trials: 40
  sampler: {name: random, seed: 0}
  pruner: {name: none}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
"""


def start(tmp_path, epochs, *args):
    (tmp_path / "c.yaml").write_text(CONFIG.replace("EPOCHS", str(epochs)))
    return subprocess.Popen(
        [*TUNEKIT, "search", "c.yaml", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def report(tmp_path):
    out = subprocess.run(
        [*TUNEKIT, "report", "stoppable", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    return json.loads(out.stdout)


def wait_for(condition, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def first_epoch_done(tmp_path):
    return lambda: (tmp_path / "runs" / "stoppable" / "trials" / "00000" / "metrics.jsonl").is_file()


def test_tunekit_stop_finishes_running_trials_on_every_worker(tmp_path):
    search = start(tmp_path, 20, "--workers", "2")
    try:
        wait_for(lambda: (tmp_path / "runs" / "stoppable" / "trials" / "00002" / "metrics.jsonl").is_file())
        asked = subprocess.run(
            [*TUNEKIT, "stop", "stoppable"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert asked.returncode == 0 and "stop asked for study 'stoppable'" in asked.stderr
        _, err = search.communicate(timeout=120)
    finally:
        search.kill()
    assert search.returncode == 0, err
    assert err.count("stopped as asked") == 2  # both workers
    s = report(tmp_path)
    assert s["states"]["RUNNING"] == 0 and s["states"]["FAIL"] == 0  # nothing cut: running trials finished
    assert 2 < s["states"]["COMPLETE"] < 40
    # An old stop does not stop the next run: it continues to the total.
    more = subprocess.run(
        [*TUNEKIT, "search", "c.yaml", "--trials", str(s["states"]["COMPLETE"] + 2)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert more.returncode == 0, more.stderr
    assert report(tmp_path)["states"]["COMPLETE"] == s["states"]["COMPLETE"] + 2


def test_a_first_ctrl_c_lets_the_running_trial_finish(tmp_path):
    search = start(tmp_path, 400)
    try:
        wait_for(first_epoch_done(tmp_path))
        os.killpg(search.pid, signal.SIGINT)
        _, err = search.communicate(timeout=300)
    finally:
        search.kill()
    assert search.returncode == 130, err
    assert "stopping: the running trial(s) finish" in err and "resume with: tunekit search" in err
    trials = report(tmp_path)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE"]  # trial 0 finished its 400 epochs; none started after


def test_a_second_ctrl_c_interrupts_and_queues_the_trial_again(tmp_path):
    search = start(tmp_path, 100000)
    try:
        wait_for(first_epoch_done(tmp_path))
        os.killpg(search.pid, signal.SIGINT)
        time.sleep(1.0)
        os.killpg(search.pid, signal.SIGINT)
        _, err = search.communicate(timeout=120)
    finally:
        search.kill()
    assert search.returncode == 130, err
    trials = report(tmp_path)["trials"]
    assert trials[0]["reason"] == "interrupted" and trials[1]["state"] == "WAITING"
