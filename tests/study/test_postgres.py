"""A study in PostgreSQL, shared by two `tunekit search` processes. The test starts its own
throwaway cluster in a temp dir (initdb refuses to run as root, so as root it uses the
`postgres` account) and stops it afterwards."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY
from tests.postgres import Cluster, needs_postgres

pytestmark = needs_postgres


@pytest.fixture(scope="module")
def postgres_url():
    cluster = Cluster()
    try:
        yield cluster.url
    finally:
        cluster.close()


def test_two_processes_share_a_postgres_study(tmp_path, postgres_url):
    config = tmp_path / "c.yaml"
    # Trials long enough (~2 s) that the second process, started once the first is training,
    # arrives while the study still needs trials.
    config.write_text(TINY.replace("trials: 3", "trials: 8").replace("epochs: 3", "epochs: 600"))
    cmd = [sys.executable, "-m", "tunekit", "search", str(config), "--storage", postgres_url, "--json"]
    procs = [
        subprocess.Popen(
            [*cmd, "--runs", str(tmp_path / "runs0")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    ]
    first_metrics = tmp_path / "runs0" / "tiny" / "trials" / "00000" / "metrics.jsonl"
    deadline = time.time() + 120
    while not first_metrics.exists():
        assert time.time() < deadline and procs[0].poll() is None
        time.sleep(0.05)
    procs.append(
        subprocess.Popen(
            [*cmd, "--runs", str(tmp_path / "runs1")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    )
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    summary = json.loads(outs[0][0])
    later = json.loads(outs[1][0])
    assert summary["storage"].startswith("127.0.0.1:")
    numbers = [t["number"] for t in max(summary, later, key=lambda s: s["n_trials"])["trials"]]
    assert (
        numbers == list(range(len(numbers))) and 8 <= len(numbers) <= 9
    )  # no file lock across machines: at most one extra
    import optuna

    from tunekit.study.storage import _driver_url

    study = optuna.load_study(study_name="tiny", storage=_driver_url(postgres_url))
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2 and all(t.state.is_finished() for t in study.trials)

    # A later run on the same storage resumes the shared study.
    again = subprocess.run(
        [*cmd, "--runs", str(tmp_path / "runs0"), "--trials", "10"], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["n_trials"] >= 10


def test_a_database_study_is_found_without_repeating_storage(tmp_path, postgres_url):
    config = tmp_path / "c.yaml"
    config.write_text(TINY.replace("trials: 3", "trials: 2"))
    runs = tmp_path / "runs"

    def tunekit(*args):
        return subprocess.run(
            [sys.executable, "-m", "tunekit", *map(str, args)], capture_output=True, text=True, timeout=300
        )

    made = tunekit("search", config, "--storage", postgres_url, "--study", "remembered", "--runs", runs)
    assert made.returncode == 0, made.stderr
    url_file = runs / "remembered" / "storage.url"
    assert url_file.read_text().strip() == postgres_url and (url_file.stat().st_mode & 0o777) == 0o600
    listed = tunekit("list", "--runs", runs, "--json")
    assert listed.returncode == 0 and [r["study"] for r in json.loads(listed.stdout)] == ["remembered"]
    report = tunekit("report", "remembered", "--runs", runs, "--json")
    assert report.returncode == 0 and json.loads(report.stdout)["states"]["COMPLETE"] == 2, report.stderr
    assert json.loads(report.stdout)["storage"].startswith("127.0.0.1:")
    assert tunekit("train", "--best", "--runs", runs).returncode == 0  # the most recent study, from the database
    more = tunekit("search", config, "--study", "remembered", "--runs", runs, "--trials", "3", "--json")
    assert more.returncode == 0 and json.loads(more.stdout)["states"]["COMPLETE"] == 3  # the same database
    assert not (runs / "remembered" / "optuna.journal").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare for hostnames")
def test_three_hosts_starting_at_once_keep_one_baseline_and_the_exact_total(tmp_path, postgres_url):
    # Three "machines" (their own UTS namespace and hostname, their own --runs) start the same
    # study at the same moment on one database: one schema, one baseline, exactly 9 trials.
    config = tmp_path / "c.yaml"
    config.write_text(TINY.replace("trials: 3", "trials: 9").replace("epochs: 3", "epochs: 40"))
    procs = []
    for host in ("host-a", "host-b", "host-c"):
        search = [sys.executable, "-m", "tunekit", "search", str(config), "--storage", postgres_url]
        search += ["--study", "hosts", "--runs", str(tmp_path / host)]
        script = f"hostname {host} && exec " + " ".join(map(shlex.quote, search))
        procs.append(
            subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    import optuna

    study = optuna.load_study(
        study_name="hosts", storage=postgres_url.replace("postgresql://", "postgresql+psycopg://")
    )
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 9 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
    assert len({t.user_attrs["worker"].rpartition(":")[0] for t in trials}) >= 2  # more than one host took trials


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare for hostnames")
def test_a_host_killed_mid_trial_is_recovered_by_the_other_and_the_total_stays_exact(tmp_path, postgres_url):
    # host-a's worker is SIGKILLed in the first epoch of whatever trial it takes; host-b sees the
    # trial's heartbeat go stale (grace 3 s), fails it as worker_died, runs its params again and
    # waits for it rather than leaving it RUNNING: 6 complete, one worker_died, 0 RUNNING.
    config = tmp_path / "c.yaml"
    config.write_text(
        TINY.replace("trials: 3", "trials: 6\n  heartbeat: {interval: 0.5, grace: 3}").replace(
            "epochs: 3", "epochs: 60"
        )
    )
    kill_first = ",".join(f"{n}:1:sigkill" for n in range(12))

    def host(name, fault=None):
        search = [sys.executable, "-m", "tunekit", "search", str(config), "--storage", postgres_url]
        search += ["--study", "killed", "--runs", str(tmp_path / name)]
        env = {k: v for k, v in os.environ.items() if k != "TUNEKIT_FAULT"}
        if fault:
            env["TUNEKIT_FAULT"] = fault
        script = f"hostname {name} && exec " + " ".join(map(shlex.quote, search))
        return subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    a = host("host-a", kill_first)
    a.communicate(timeout=300)
    assert a.returncode == -9 or a.returncode == 137  # killed mid-trial, its trial left RUNNING
    b = host("host-b")
    _, err = b.communicate(timeout=300)
    assert b.returncode == 0, err
    import optuna

    study = optuna.load_study(
        study_name="killed", storage=postgres_url.replace("postgresql://", "postgresql+psycopg://")
    )
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.RUNNING) == 0
    assert states.count(optuna.trial.TrialState.COMPLETE) == 6
    died = [t for t in trials if t.user_attrs.get("reason") == "worker_died"]
    assert len(died) == 1 and died[0].user_attrs["worker"].startswith("host-a:")
    assert any(t.params == died[0].params and t.state == optuna.trial.TrialState.COMPLETE for t in trials)
