"""The study engine: every sampler and pruner, parallel workers, killed workers, time limits."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from tests.conftest import TINY
from tunekit.components.samplers import PRUNERS, SAMPLERS

FINITE = """\
name: eng
data: {name: iris}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 32}
study: {trials: 5, sampler: {name: SAMPLER}, pruner: {name: none}}
search:
  optimizer.lr: {low: 0.005, high: 0.05, step: 0.005}
  train.epochs: {low: 2, high: 3}
  model.hidden: {choices: [[8], [16]]}
"""


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_runs_a_study(cli, write_config, runs, sampler):
    try:
        import cmaes  # noqa: F401

        has_cmaes = True
    except ImportError:
        has_cmaes = False
    result = cli("search", write_config(FINITE.replace("SAMPLER", sampler)), "--runs", runs, "--json")
    if sampler == "cmaes" and not has_cmaes:
        assert result.exit_code == 3 and "pip install 'tunekit[samplers]'" in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["states"]["COMPLETE"] == 5
    assert len({json.dumps(t["params"], sort_keys=True) for t in summary["trials"]}) >= (
        4 if sampler in ("grid", "bruteforce") else 2
    )


@pytest.mark.parametrize("pruner", PRUNERS.names())
def test_every_pruner_runs_a_study(cli, write_config, runs, pruner):
    args = ", lower: 0.0" if pruner == "threshold" else ""
    text = (
        TINY.replace("pruner: {name: none}", f"pruner: {{name: {pruner}{args}}}")
        .replace("trials: 3", "trials: 6")
        .replace("epochs: 3", "epochs: 5")
    )
    result = cli("search", write_config(text), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    states = json.loads(result.stdout)["states"]
    assert states["COMPLETE"] + states["PRUNED"] == 6


def test_sampler_and_pruner_arguments_are_checked_before_anything_is_written(cli, write_config, runs):
    text = TINY.replace("pruner: {name: none}", "pruner: {name: threshold}")
    result = cli("search", write_config(text), "--runs", runs)
    assert result.exit_code == 3 and "study.pruner: threshold: give lower and/or upper" in result.stderr
    assert not runs.exists()
    grid = TINY.replace("sampler: {name: random, seed: 0}", "sampler: {name: grid}")
    result = cli("validate", write_config(grid))
    assert (
        result.exit_code == 3
        and "grid needs choices or a step for every entry; search.optimizer.lr is a continuous range" in result.stderr
    )


def test_a_pruner_really_prunes(cli, write_config, runs):
    text = TINY.replace("pruner: {name: none}", "pruner: {name: threshold, lower: 0.999, warmup_epochs: 1}").replace(
        "epochs: 3", "epochs: 6"
    )
    summary = json.loads(cli("search", write_config(text), "--runs", runs, "--json").stdout)
    pruned = [t for t in summary["trials"] if t["state"] == "PRUNED"]
    assert len(pruned) >= 2
    lines = (runs / "tiny" / "trials" / f"{pruned[0]['number']:05d}" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # stopped right after warmup, not trained to the end


TUNEKIT = [sys.executable, "-m", "tunekit"]


def test_two_workers_share_one_study(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        TINY.replace("trials: 3", "trials: 8").replace("epochs: 3", "epochs: 60")
    )  # ~0.5 s trials: both workers get some
    runs = tmp_path / "runs"
    result = subprocess.run(
        [*TUNEKIT, "search", str(config), "--runs", str(runs), "--workers", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    numbers = [t["number"] for t in summary["trials"]]
    assert sorted(numbers) == list(range(8)) and summary["states"]["COMPLETE"] == 8  # exactly the total, no overshoot
    lrs = [t["params"]["optimizer.lr"] for t in summary["trials"]]
    assert len(set(lrs)) == 8  # workers draw different trials (identically seeded samplers would repeat each other)
    assert "started 2 workers x 1 thread(s)" in result.stderr and "[w0]" in result.stderr and "[w1]" in result.stderr
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(
        study_name="tiny", storage=JournalStorage(JournalFileBackend(str(runs / "tiny" / "optuna.journal")))
    )
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both processes ran trials


def test_killed_worker_leaves_no_running_trial(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY.replace("trials: 3", "trials: 3").replace("epochs: 3", "epochs: 400"))
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [*TUNEKIT, "search", str(config), "--runs", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = runs / "tiny" / "trials" / "00001" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: trial 1 stays RUNNING in the journal
    proc.wait()
    report = json.loads(
        subprocess.run(
            [*TUNEKIT, "report", "--runs", str(runs), "--format", "json"], capture_output=True, text=True
        ).stdout
    )
    assert report["states"]["RUNNING"] == 1

    done = subprocess.run(
        [*TUNEKIT, "search", str(config), "--runs", str(runs), "--json", "--set", "train.epochs=400"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "trial 1 was left RUNNING by" in done.stderr and "worker_died" in done.stderr
    after = json.loads(done.stdout)
    assert after["states"] == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 1, "RUNNING": 0}
    assert after["trials"][1]["reason"] == "worker_died"
    assert any(t["params"] == after["trials"][1]["params"] and t["state"] == "COMPLETE" for t in after["trials"][2:])


def test_timeout_also_stops_the_running_trial(cli, write_config, runs):
    text = TINY.replace("epochs: 3", "epochs: 100000").replace("trials: 3", "trials: 50")
    started = time.monotonic()
    result = cli("search", write_config(text), "--runs", runs, "--timeout", "2s", "--json")
    assert time.monotonic() - started < 60
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    # Cut short after some epochs: told its best epoch's value, marked as cut, and not run again.
    first = summary["trials"][0]
    assert first["state"] == "COMPLETE" and first["cut_short"] == "timeout" and first["value"] is not None
    assert summary["n_trials"] == 1 and summary["states"]["COMPLETE"] == 1
    assert "(cut by timeout at epoch" in result.stderr


def test_threads_split_the_cores():
    from tunekit.study.workers import threads_per_worker

    assert (
        threads_per_worker(2, cores=2) == 1
        and threads_per_worker(1, cores=16) == 16
        and threads_per_worker(4, cores=2) == 1
    )


def test_live_workers_are_those_with_a_fresh_heartbeat():
    import optuna

    from tunekit.study.liveness import HOST, live_workers

    study = optuna.create_study()
    alive, gone = study.ask(), study.ask()
    alive.set_user_attr("worker", f"{HOST}:{os.getpid()}")
    alive.set_user_attr("heartbeat", time.time())
    gone.set_user_attr("worker", "elsewhere:1")
    gone.set_user_attr("heartbeat", time.time() - 3600)
    assert live_workers(study) == [f"{HOST}:{os.getpid()}"]


def test_a_worker_that_was_away_drops_its_result_and_goes_on(cli, write_config, runs, monkeypatch):
    """Another worker failed this worker's trial as dead while it was paused; on resuming, its
    writes to the finished trial are refused, and it must carry on rather than crash."""
    import optuna

    import tunekit.study.worker as search
    from tunekit.study.liveness import recover_dead_trials
    from tunekit.study.trial import TrialJob

    real_train_alone, calls = TrialJob.train_alone, []

    def paused_then_resumed(self, ended=None):
        calls.append(self.trial.number)
        if len(calls) == 1:
            study = optuna.load_study(study_name="tiny", storage=search.open_storage(self.study_dir))
            self.trial.set_user_attr("heartbeat", time.time() - 3600)  # looks dead to the others
            assert recover_dead_trials(study, lambda line: None) == 1
            return self.end(ended, outcome=("COMPLETE", 0.5))  # ...and then this worker wakes up with a result
        return real_train_alone(self, ended)

    monkeypatch.setattr(TrialJob, "train_alone", paused_then_resumed)
    result = cli("search", write_config(), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    assert "was closed by another worker while this one was unresponsive" in result.stderr
    s = json.loads(result.stdout)
    assert (
        s["states"] == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 1, "RUNNING": 0}
        and s["trials"][0]["reason"] == "worker_died"
    )


@pytest.mark.parametrize("sampler, population", [("grid", 1), ("grid", 3), ("bruteforce", 1)])
def test_a_finite_sampler_stops_the_search_when_it_has_covered_the_space(cli, write_config, runs, sampler, population):
    text = TINY.replace("trials: 3", f"trials: 12\n  population: {population}").replace(
        "name: random, seed: 0", f"name: {sampler}"
    )
    text = text.replace(
        "optimizer.lr: {low: 1e-3, high: 1e-1, log: true}", "optimizer.lr: {choices: [0.001, 0.01, 0.1]}"
    )
    result = cli("search", write_config(text), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    assert f"the {sampler} sampler has tried every point of the search space: stopping at" in result.stderr
    done = json.loads(result.stdout)["trials"]
    assert {t["params"]["optimizer.lr"] for t in done} == {0.001, 0.01, 0.1} and len(done) < 12
    again = cli("search", write_config(text), "--runs", runs, "--json")  # a rerun has nothing left to do
    assert again.exit_code == 0 and len(json.loads(again.stdout)["trials"]) == len(done)


def test_the_timeout_alarm_outside_a_trials_training_is_no_internal_error(cli, write_config, runs, monkeypatch):
    # The alarm (deadline + grace) lands while a trial is being built, where no trial code catches it.
    import tunekit.study.alarm as alarm
    import tunekit.study.worker as worker

    monkeypatch.setattr(alarm, "ALARM_GRACE_S", 0.0)
    monkeypatch.setattr(worker, "train_jobs", lambda *args, **kwargs: time.sleep(30))
    result = cli("search", write_config(), "--runs", runs, "--timeout", "1s", "--json")
    assert result.exit_code == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    assert trials[0]["reason"] == "timeout" and trials[1]["state"] == "WAITING"  # queued to run again


def test_optunas_own_tools_see_the_metric_names(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs).exit_code == 0
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(runs / "tiny" / "optuna.journal")))
    assert optuna.load_study(study_name="tiny", storage=storage).metric_names == ["val_accuracy"]
