"""--timeout as a user meets it: a trial it cuts off before its first epoch is run again by the next
search and does not count toward --trials (one with an epoch done is told its best epoch), and the
hint printed at the end names a command that works."""

import json
import os
import shlex
import subprocess
import sys

TUNEKIT = [sys.executable, "-m", "tunekit"]

CONFIG = """\
name: budget
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 32}
study:
  trials: 2
  sampler: {name: random, seed: 0}
  pruner: {name: none}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
"""


def tunekit(tmp_path, *args, fault=None):
    env = {k: v for k, v in os.environ.items() if k != "TUNEKIT_FAULT"}
    if fault:
        env["TUNEKIT_FAULT"] = fault
    return subprocess.run(
        [*TUNEKIT, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )


def test_a_timed_out_trial_runs_again_and_the_hint_works(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    # Trial 0 hangs before its first epoch: the 3 s timeout cuts it, and nothing has completed.
    cut = tunekit(tmp_path, "search", config, "--timeout", "3s", fault="0:build:hang")
    assert cut.returncode == 0, cut.stderr
    assert "next: tunekit train" not in cut.stderr  # `train --best` would exit 5 here
    hint = cut.stderr.rsplit("no trial completed yet; to continue: ", 1)[1].splitlines()[0]
    assert shlex.split(hint)[:2] == ["tunekit", "search"]

    rerun = tunekit(tmp_path, *shlex.split(hint)[1:])  # the printed command, as the user would paste it
    assert rerun.returncode == 0, rerun.stderr
    assert "next: tunekit train --best --study budget" in rerun.stderr
    after = json.loads(tunekit(tmp_path, "report", "budget", "--format", "json").stdout)
    trials = after["trials"]
    assert trials[0]["reason"] == "timeout"
    # The timed-out trial ran again with its own params, and the timeout did not use up a trial:
    # the study holds the 2 completed trials it asked for.
    assert trials[1]["params"] == trials[0]["params"] and trials[1]["state"] == "COMPLETE"
    assert after["states"]["COMPLETE"] == 2 and len(trials) == 3
    assert tunekit(tmp_path, "train", "--best", "--study", "budget").returncode == 0


def test_the_printed_resume_command_keeps_the_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    cut = tunekit(tmp_path, "search", config, "--timeout", "3s", "--set", "train.epochs=3", fault="0:build:hang")
    assert cut.returncode == 0, cut.stderr
    hint = cut.stderr.rsplit("to continue: ", 1)[1].splitlines()[0]
    assert "--set train.epochs=3" in hint
    rerun = tunekit(tmp_path, *shlex.split(hint)[1:])  # not refused as "the config differs"
    assert rerun.returncode == 0, rerun.stderr


def test_an_output_path_under_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = tunekit(tmp_path, "init", "-o", tmp_path / "afile" / "x.yaml")
    assert result.returncode == 5 and "a file stands where its folder should be" in result.stderr
    assert "internal error" not in result.stderr
