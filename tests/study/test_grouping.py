"""study.population through the real CLI: trials asked K at a time share their architecture, train
together, and are each still reported, pruned, failed, interrupted and retrained as their own trial."""

import json
import os
import subprocess
import sys

import pytest

POP = """\
name: pop
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 32}
study:
  trials: 8
  population: 4
  population_ramp: false  # whole populations from the first trial (the ramp is tested on its own)
  sampler: {name: random, seed: 0}
  pruner: {name: none}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  optimizer.weight_decay: {low: 0.0, high: 0.01}
  model.hidden: {choices: [[8], [16], [32]]}
  train.batch_size: {choices: [16, 32, 64]}
"""


def load(runs, name="pop"):
    from tunekit.runs import StudyDir
    from tunekit.study.storage import load_study

    return load_study(StudyDir(runs, name), None)


def test_members_share_the_architecture_and_differ_in_optimizer_numbers(cli, write_config, runs):
    result = cli("search", write_config(POP), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["states"] == {"COMPLETE": 8, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    trials = load(runs).get_trials()
    for group in (trials[0:4], trials[4:8]):
        shared = {(t.params["model.hidden"], t.params["train.batch_size"]) for t in group}
        assert len(shared) == 1, [t.params for t in group]
        assert len({t.params["optimizer.lr"] for t in group}) == 4
        # Every member after the first records the batch order it saw, for train --best.
        assert [t.user_attrs.get("shuffle_seed") for t in group] == [None] + [_seed_of(group[0])] * 3
    for t in trials:
        lines = (runs / "pop" / "trials" / f"{t.number:05d}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def _seed_of(trial):
    from tunekit.study.trial import trial_seed

    return trial_seed(0, trial.number)


def test_the_same_study_twice_gives_the_same_values(cli, write_config, tmp_path):
    values = []
    for name in ("a", "b"):
        result = cli("search", write_config(POP.replace("trials: 8", "trials: 4")), "--runs", tmp_path / name, "--json")
        assert result.exit_code == 0, result.stderr
        values.append([t["value"] for t in json.loads(result.stdout)["trials"]])
    assert values[0] == values[1]


def test_train_best_reproduces_a_member_trained_in_a_population(cli, write_config, runs):
    assert cli("search", write_config(POP.replace("trials: 8", "trials: 4")), "--runs", runs).exit_code == 0
    member = load(runs).get_trials()[2]
    assert member.user_attrs["shuffle_seed"] != _seed_of(member)  # it saw its population's batch order
    result = cli("train", "--best", "--pick", "2", "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    retrained = json.loads(result.stdout)["metrics"]
    assert retrained["val_loss"] == pytest.approx(member.user_attrs["result"]["metrics"]["val_loss"], rel=1e-4)
    assert retrained["val_accuracy"] == pytest.approx(
        member.user_attrs["result"]["metrics"]["val_accuracy"], abs=1 / 30 + 1e-9
    )


def test_each_member_is_pruned_on_its_own(cli, write_config, runs):
    text = (
        POP.replace("pruner: {name: none}", "pruner: {name: threshold, upper: 0.9, warmup_epochs: 4}")
        .replace("epochs: 3", "epochs: 6")
        .replace("trials: 8", "trials: 4")
        .replace("study:\n", "study:\n  metric: val_loss\n")
    )
    text = text.replace("optimizer.lr: {low: 1e-3, high: 1e-1, log: true}", "optimizer.lr: {choices: [0.000001, 0.05]}")
    result = cli("search", write_config(text), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    by_lr = {t["number"]: t["params"]["optimizer.lr"] for t in trials}
    assert {t["state"] for t in trials if by_lr[t["number"]] == 0.000001} <= {"PRUNED"}
    assert {t["state"] for t in trials if by_lr[t["number"]] == 0.05} <= {"COMPLETE"}
    assert len(set(by_lr.values())) == 2  # both kinds were in the population


def test_a_failing_member_fails_alone(cli, write_config, runs, monkeypatch):
    monkeypatch.setenv("TUNEKIT_FAULT", "1:2:raise,2:2:nan")
    result = cli("search", write_config(POP.replace("trials: 8", "trials: 4")), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert [trials[1]["reason"], trials[2]["reason"]] == ["error", "nonfinite_loss"]


def test_trials_that_cannot_share_train_one_at_a_time(cli, write_config, runs):
    text = POP.replace("trials: 8", "trials: 4") + "  optimizer.name: {choices: [nadam]}\n"
    result = cli("search", write_config(text), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    assert "train one at a time: optimizer 'nadam' has no vectorized form" in result.stderr
    assert json.loads(result.stdout)["states"]["COMPLETE"] == 4


def test_sigint_fails_every_member_as_interrupted_and_the_rerun_completes(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(POP.replace("trials: 8", "trials: 3").replace("population: 4", "population: 3"))
    runs = tmp_path / "runs"
    tunekit = [sys.executable, "-m", "tunekit"]
    first = subprocess.run(
        [*tunekit, "search", config, "--runs", runs],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TUNEKIT_FAULT": "1:2:sigint"},
    )
    assert first.returncode == 130, first.stderr
    study = load(runs)
    states = [(t.state.name, t.user_attrs.get("reason")) for t in study.get_trials()]
    assert states == [("FAIL", "interrupted")] * 3 + [("WAITING", None)] * 3  # each queued to run again
    second = subprocess.run(
        [*tunekit, "search", config, "--runs", runs, "--json"], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    after = json.loads(second.stdout)
    assert after["states"] == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 3, "RUNNING": 0}
    retried = {json.dumps(t["params"], sort_keys=True) for t in after["trials"][3:]}
    assert retried == {json.dumps(t["params"], sort_keys=True) for t in after["trials"][:3]}  # the same three, retried


def test_two_workers_with_populations_hit_the_total_exactly(cli, write_config, runs):
    result = cli(
        "search",
        write_config(POP.replace("population: 4", "population: 2").replace("trials: 8", "trials: 6")),
        "--runs",
        runs,
        "--workers",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["states"] == {"COMPLETE": 6, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}


def test_a_member_hung_inside_an_epoch_is_stopped_by_the_timeout_with_its_population(
    cli, write_config, runs, monkeypatch
):
    monkeypatch.setenv("TUNEKIT_FAULT", "1:1:hang")  # sleeps an hour in member 1's first epoch callback
    result = cli(
        "search", write_config(POP.replace("trials: 8", "trials: 4")), "--runs", runs, "--timeout", "3s", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert "internal error" not in result.stderr
    trials = json.loads(result.stdout)["trials"]
    # Every member had finished an epoch: each is told its best epoch's value, marked as cut short,
    # and counts (nothing is queued to run again).
    assert len(trials) == 4 and {t["state"] for t in trials} == {"COMPLETE"}
    assert trials[1]["cut_short"] == "timeout"
    for t in trials:
        curve = [json.loads(line) for line in (runs / "pop" / "trials" / f"{t['number']:05d}" / "metrics.jsonl").open()]
        assert t["value"] == pytest.approx(max(e["val_accuracy"] for e in curve))
        assert (t["cut_short"] == "timeout") == (len(curve) < 3)


def test_members_cut_by_the_timeout_before_any_epoch_run_again(cli, write_config, runs, monkeypatch):
    monkeypatch.setenv("TUNEKIT_FAULT", "1:build:hang")  # member 1 hangs while it is built
    result = cli(
        "search", write_config(POP.replace("trials: 8", "trials: 4")), "--runs", runs, "--timeout", "2s", "--json"
    )
    assert result.exit_code == 0, result.stderr  # only timeouts: the user asked it to stop
    assert "internal error" not in result.stderr
    trials = json.loads(result.stdout)["trials"]
    cut = [t for t in trials if t["state"] == "FAIL"]
    assert cut and {t["reason"] for t in cut} == {"timeout"} and "RUNNING" not in {t["state"] for t in trials}
    assert len([t for t in trials if t["state"] == "WAITING"]) == len(cut)  # each queued to run again
    monkeypatch.delenv("TUNEKIT_FAULT")
    again = cli("search", write_config(POP.replace("trials: 8", "trials: 4")), "--runs", runs, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["states"]["COMPLETE"] == 4  # the total is exact after the rerun


def test_a_study_resumes_with_another_population_size(cli, write_config, runs):
    path = write_config(POP.replace("trials: 8", "trials: 4"))
    assert cli("search", path, "--runs", runs).exit_code == 0
    result = cli("search", path, "--runs", runs, "--trials", "6", "--set", "study.population=1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["states"]["COMPLETE"] == 6


def test_a_population_that_runs_out_of_memory_trains_in_halves(cli, write_config, runs, monkeypatch):
    import torch

    from tunekit.train import vectorized as population

    real_step = population.StackedOptimizer.step

    def step_needing_room(self, params):  # as a GPU that holds two copies of the model but not four
        if len(self.runs) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_step(self, params)

    monkeypatch.setattr(population.StackedOptimizer, "step", step_needing_room)
    result = cli("search", write_config(POP.replace("trials: 8", "trials: 4")), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    assert "a population of 4 ran out of memory before its first epoch ended: training it in halves" in result.stderr
    assert json.loads(result.stdout)["states"] == {"COMPLETE": 4, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    for number in range(4):  # each trial's curve was written once, by the run that finished
        lines = (runs / "pop" / "trials" / f"{number:05d}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
