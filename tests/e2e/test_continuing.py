"""Continuing a study, as a user does: rerun it, ask for more trials, resume after a signal or a
kill, with one worker or several. No continuation draws a parameter set the study already ran,
and the same commands on a fresh folder draw the same trials."""

import json
import os
import subprocess
import sys

import pytest

TUNEKIT = [sys.executable, "-m", "tunekit"]

CONTINUOUS = """\
name: cont
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16], dropout: 0.1}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 32}
study:
  trials: 4
  sampler: {name: SAMPLER, seed: 0}
  pruner: {name: none}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  model.dropout: {low: 0.0, high: 0.5}
"""


def tunekit(*args, fault=None, timeout=300):
    env = {**os.environ, "TUNEKIT_FAULT": fault} if fault else dict(os.environ)
    return subprocess.run([*TUNEKIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def exact(params: dict) -> str:
    """A parameter set to 17 significant digits: equal floats print equal, different ones never do."""
    return json.dumps({k: (f"{v:.17g}" if isinstance(v, float) else v) for k, v in sorted(params.items())})


def ran(summary: dict) -> list[str]:
    """The parameter sets of the trials that ran to an end (an interrupted trial's retry runs its set)."""
    return [exact(t["params"]) for t in summary["trials"] if t["state"] in ("COMPLETE", "PRUNED")]


def extend(cli, config, runs) -> dict:
    assert cli("search", config, "--runs", runs, "-q").exit_code == 0
    result = cli("search", config, "--runs", runs, "--trials", "8", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_more_trials_draw_new_params_and_the_same_commands_draw_the_same(cli, tmp_path, sampler):
    config = tmp_path / "c.yaml"
    config.write_text(CONTINUOUS.replace("SAMPLER", sampler))
    first = extend(cli, config, tmp_path / "runs")
    params = ran(first)
    assert len(params) == 8 and len(set(params)) == 8, params  # trials 4-7 used to repeat trials 0-3
    again = extend(cli, config, tmp_path / "fresh")
    assert ran(again) == params  # a given study with a given seed stays reproducible


@pytest.mark.parametrize("signal_name", ["sigterm", "sigkill"])
def test_resuming_after_a_signal_repeats_only_the_cut_trial(tmp_path, signal_name):
    config = tmp_path / "c.yaml"
    config.write_text(CONTINUOUS.replace("SAMPLER", "tpe").replace("trials: 4", "trials: 6"))
    runs = tmp_path / "runs"
    first = tunekit("search", config, "--runs", runs, fault=f"2:1:{signal_name}")
    assert first.returncode == {"sigterm": 143, "sigkill": -9}[signal_name], first.stderr
    second = tunekit("search", config, "--runs", runs, "--json")
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    params = ran(summary)
    assert len(params) == 6 and len(set(params)) == 6, params
    cut = next(t for t in summary["trials"] if t["state"] == "FAIL")
    assert cut["number"] == 2 and exact(cut["params"]) in params  # retried with its own params, once


def test_two_workers_continuing_a_study_draw_new_params(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONTINUOUS.replace("SAMPLER", "tpe"))
    runs = tmp_path / "runs"
    assert tunekit("search", config, "--runs", runs, "--workers", "2", "-q").returncode == 0
    result = tunekit("search", config, "--runs", runs, "--workers", "2", "--trials", "8", "--json")
    assert result.returncode == 0, result.stderr
    params = ran(json.loads(result.stdout))
    assert len(params) == 8 and len(set(params)) == 8, params


def test_warm_start_reruns_the_best_trials_of_another_study(tmp_path):
    first = tmp_path / "first.yaml"
    first.write_text(CONTINUOUS.replace("SAMPLER", "random").replace("name: cont", "name: first"))
    assert tunekit("search", first, "--runs", tmp_path / "runs").returncode == 0
    old = json.loads(tunekit("report", "first", "--runs", tmp_path / "runs", "--json").stdout)
    baseline = old["trials"][0]["params"]  # the same base config: the second study's baseline runs it anyway
    best_first = sorted(
        (t for t in old["trials"] if t["state"] == "COMPLETE" and t["params"] != baseline), key=lambda t: -t["value"]
    )
    # A second study over a wider lr range, warm-started from the first: after its baseline, its
    # trials are the first study's completed trials, best first, measured again here.
    second = tmp_path / "second.yaml"
    second.write_text(
        CONTINUOUS.replace("SAMPLER", "tpe")
        .replace("name: cont", "name: second")
        .replace("trials: 4", "trials: 6")
        .replace("low: 1e-3, high: 1e-1", "low: 1e-4, high: 1.0")
    )
    result = tunekit("search", second, "--runs", tmp_path / "runs", "--warm-start", "first", "--json")
    assert result.returncode == 0, result.stderr
    assert "warm start: queued 3 best trial(s) of 'first'" in result.stderr
    trials = json.loads(result.stdout)["trials"]
    assert [exact(t["params"]) for t in trials[1:4]] == [exact(t["params"]) for t in best_first]
    missing = tunekit("search", second, "--runs", tmp_path / "runs", "--study", "third", "--warm-start", "nope")
    assert missing.returncode == 5 and "no study 'nope'" in missing.stderr
    assert not (tmp_path / "runs" / "third").exists()  # refused before anything was written


def test_a_total_already_reached_says_so_and_runs_nothing(cli, write_config, runs):
    config = write_config()
    assert cli("search", config, "--runs", runs).exit_code == 0
    again = cli("search", config, "--runs", runs, "--trials", "2", "--json")
    assert again.exit_code == 0, again.stderr
    assert "3/2 trials done" in again.stderr
    assert "nothing to run: --trials is the study's total (2); pass --trials 13 to add 10 more" in again.stderr
    assert json.loads(again.stdout)["n_trials"] == 3
