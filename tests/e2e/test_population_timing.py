"""Populations never delay a result, and --timeout never costs one: journeys through the real CLI.

A member is told the moment it ends (a pruned one at its epoch, not when its population's last
member ends); a study's first trial runs alone, so its first result comes as a lone trial's would;
and a --timeout landing anywhere — mid-epoch, while a population winds down, while a trial is
told — ends the search with its usual exit code, every trial closed, those with a finished epoch
COMPLETE with their best epoch's value."""

from __future__ import annotations

import json

import pytest

POP = """\
name: pop
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.05}
train: {epochs: 3, batch_size: 32}
study:
  trials: 8
  population: 4
  population_ramp: false
  sampler: {name: random, seed: 0}
  pruner: {name: none}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  optimizer.weight_decay: {low: 0.0, high: 0.01}
"""


def trials_of(runs, name="pop"):
    from tunekit.runs import StudyDir
    from tunekit.study.storage import load_study

    return load_study(StudyDir(runs, name), None).get_trials()


def curve(runs, number: int, name="pop") -> list[dict]:
    path = runs / name / "trials" / f"{number:05d}" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_best_epoch_values(runs, trials) -> None:
    for t in trials:
        if t["state"] == "COMPLETE":
            assert t["value"] == pytest.approx(max(e["val_accuracy"] for e in curve(runs, t["number"])))


@pytest.fixture
def no_grace(monkeypatch):
    """The --timeout alarm at the deadline itself, so a test can place it with a sleep."""
    import tunekit.study.alarm as alarm

    monkeypatch.setattr(alarm, "ALARM_GRACE_S", 0.0)


def test_a_timeout_while_a_population_winds_down_keeps_every_members_result(
    cli, write_config, runs, monkeypatch, no_grace
):
    import time

    import tunekit.study.grouping as grouping

    real = grouping.fit_population

    def then_wind_down_slowly(*args, **kwargs):
        outcomes = real(*args, **kwargs)
        time.sleep(4)  # the alarm (deadline + 0 s) lands here, after the population's last epoch
        return outcomes

    monkeypatch.setattr(grouping, "fit_population", then_wind_down_slowly)
    config = write_config(POP)
    result = cli("search", config, "--runs", runs, "--timeout", "2s", "--json")
    assert result.exit_code == 0, result.stderr
    assert "internal error" not in result.stderr and "timeout reached" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["states"] == {"COMPLETE": 4, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    assert_best_epoch_values(runs, summary["trials"])

    monkeypatch.setattr(grouping, "fit_population", real)
    again = cli("search", config, "--runs", runs, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["states"] == {"COMPLETE": 8, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}


@pytest.mark.parametrize("population", [1, 4])
def test_a_timeout_while_a_trial_is_told_waits_for_the_tell(cli, write_config, runs, monkeypatch, no_grace, population):
    import time

    import tunekit.study.worker as worker

    real, calls = worker.tell, []

    def slow_tell(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(2.5)  # the alarm (at 2 s) lands in the middle of telling the first trial
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "tell", slow_tell)
    text = POP.replace("population: 4", f"population: {population}")
    result = cli("search", write_config(text), "--runs", runs, "--timeout", "2s", "--json")
    assert result.exit_code == 0, result.stderr
    assert "internal error" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["states"]["RUNNING"] == 0 and summary["trials"][0]["state"] == "COMPLETE"
    assert_best_epoch_values(runs, summary["trials"])
    assert all(t.state.is_finished() or t.state.name == "WAITING" for t in trials_of(runs))


def test_a_timeout_between_a_lone_trials_last_epoch_and_its_tell_keeps_its_result(
    cli, write_config, runs, monkeypatch, no_grace
):
    import time

    import tunekit.study.trial as trial

    real = trial.fit

    def then_pause(*args, **kwargs):
        result = real(*args, **kwargs)
        time.sleep(4)  # the alarm (at 2 s) lands here, after its last epoch and before its tell
        return result

    monkeypatch.setattr(trial, "fit", then_pause)
    result = cli(
        "search",
        write_config(POP.replace("population: 4", "population: 1")),
        "--runs",
        runs,
        "--timeout",
        "2s",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout)["trials"][0]
    # All its epochs ran: COMPLETE with its best, and not marked as cut short.
    assert first["state"] == "COMPLETE" and first["cut_short"] is None
    assert_best_epoch_values(runs, [first])


PRUNING = (
    POP.replace("epochs: 3", "epochs: 8")
    .replace("pruner: {name: none}", "pruner: {name: threshold, lower: 0.8, warmup_epochs: 3}")
    .replace("optimizer.lr: {low: 1e-3, high: 1e-1, log: true}", "optimizer.lr: {choices: [1.0e-6, 0.05]}")
)


def test_a_pruned_member_is_told_before_its_population_ends(cli, write_config, runs, monkeypatch):
    # Trial 0 (the baseline, lr 0.05) learns; members drawn with lr 1e-6 cannot and are pruned at
    # epoch 4. Trial 0 sleeps 0.1 s at each later epoch, so the population runs on well after.
    monkeypatch.setenv("TUNEKIT_FAULT", ",".join(f"0:{e}:sleep" for e in range(4, 9)))
    result = cli("search", write_config(PRUNING.replace("trials: 8", "trials: 4")), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    trials = trials_of(runs)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert pruned and complete, [(t.number, t.state.name, t.params) for t in trials]
    last = max(t.datetime_complete for t in complete)
    for t in pruned:
        assert (last - t.datetime_complete).total_seconds() > 0.3  # told at its epoch, not at the end
    # The progress line of a pruned member comes before its population's last one.
    lines = [line for line in result.stderr.splitlines() if "] trial " in line]
    order = [int(line.split("] trial ")[1].split()[0]) for line in lines]
    assert order.index(pruned[0].number) < order.index(max(complete, key=lambda t: t.datetime_complete).number)


def test_the_first_trial_of_a_population_study_runs_alone(cli, write_config, runs):
    # With the default ramp, trial 0 runs alone and is told before any other starts; then
    # populations double, each no bigger than the trials already counted: 1, 1, 2, 4.
    text = POP.replace("  population_ramp: false\n", "").replace("population: 4", "population: 8")
    result = cli("search", write_config(text), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    trials = sorted(trials_of(runs), key=lambda t: t.number)
    assert len(trials) == 8
    assert trials[0].datetime_complete <= trials[1].datetime_start
    assert trials[1].datetime_complete <= min(t.datetime_start for t in trials[2:])
    assert max(t.datetime_complete for t in trials[2:4]) <= min(t.datetime_start for t in trials[4:])
    assert json.loads(result.stdout)["states"]["COMPLETE"] == 8
