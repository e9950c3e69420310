"""A study's database that is unreachable, silent, or lost in the middle of a search: the command
ends within seconds with one line naming the storage (never its password) and exit code 4, and
the study recovers once the database is back. Many workers share one database study exactly.

The lost-mid-study and many-worker journeys start a throwaway PostgreSQL cluster (tests/postgres.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import TINY
from tests.postgres import Cluster, free_port, needs_postgres

LONG = bool(os.environ.get("TUNEKIT_LONG_FAULTS"))


def _tunekit(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tunekit", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def cluster():
    server = Cluster()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "no-such-host.invalid"])
def test_an_unreachable_database_is_one_line_naming_it_without_its_password(cli, write_config, runs, host):
    pytest.importorskip("psycopg")
    url = f"postgresql://nobody:s3cret@{host.format(port=free_port())}/x"
    started = time.monotonic()
    result = cli("search", write_config(), "--runs", runs, "--storage", url)
    assert result.exit_code == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot open storage {url.split('@')[1]}: ")
    assert "s3cret" not in result.stderr and "server is up and reachable" in result.stderr
    assert time.monotonic() - started < 30
    assert not (runs / "x").exists() and not (runs / "tiny" / "storage.url").exists()


def test_a_database_whose_driver_is_missing_is_one_line_not_an_internal_error(cli, write_config, runs):
    pytest.importorskip("sqlalchemy")
    try:
        import MySQLdb  # noqa: F401

        pytest.skip("MySQLdb is installed here")
    except ImportError:
        pass
    result = cli("search", write_config(), "--runs", runs, "--storage", "mysql://u:pw123@127.0.0.1/db")
    assert result.exit_code == 4, result.stderr
    assert result.stderr.startswith("error: cannot open storage 127.0.0.1/db: No module named 'MySQLdb'")
    assert "pip install mysqlclient" in result.stderr and "pw123" not in result.stderr


def test_a_database_that_accepts_but_never_answers_fails_within_seconds(cli, write_config, runs, monkeypatch):
    # A server that takes the TCP connection and never says a word (a hung database, a
    # half-open proxy): libpq would wait for ever (psycopg's default is minutes); the
    # connect timeout (TUNEKIT_STORAGE_TIMEOUT, here 2 s) ends it.
    pytest.importorskip("psycopg")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    monkeypatch.setenv("TUNEKIT_STORAGE_TIMEOUT", "2")
    try:
        started = time.monotonic()
        url = f"postgresql://nobody:s3cret@127.0.0.1:{listener.getsockname()[1]}/x"
        result = cli("search", write_config(), "--runs", runs, "--storage", url)
        elapsed = time.monotonic() - started
    finally:
        done.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
    assert result.exit_code == 4, result.stderr
    assert "cannot open storage 127.0.0.1:" in result.stderr and "timeout" in result.stderr
    assert "s3cret" not in result.stderr
    assert held and elapsed < 20  # it did connect, and gave up after the timeout, not the driver's minutes


@needs_postgres
def test_a_database_lost_mid_search_ends_it_within_seconds_and_the_rerun_recovers_the_exact_total(tmp_path, cluster):
    # The server is stopped at once (pg_ctl -m immediate: no goodbye on the connections) while the
    # second trial trains. Trials report no epochs to a pruner here, so only the heartbeat (0.5 s)
    # notices; the search ends at the trial's next epoch (trial 0 is made slow: 0.1 s an epoch) with exit code 4 and one line, not at the
    # trial's end, not hanging, and not as an internal error. The trial it was running stays RUNNING
    # in the database; once the server is back, the same command fails it as worker_died, runs its
    # params again and reaches exactly 4 complete trials.
    config = tmp_path / "c.yaml"
    config.write_text(
        TINY.replace("trials: 3", "trials: 4\n  heartbeat: {interval: 0.5, grace: 3}").replace(
            "epochs: 3", "epochs: 100"
        )
    )
    cmd = [sys.executable, "-m", "tunekit", "search", str(config), "--storage", cluster.url, "--runs", str(tmp_path)]
    slow_first = ",".join(f"0:{epoch}:sleep" for epoch in range(1, 101))  # trial 0 trains >= 10 s, the rest fast
    env = {**os.environ, "TUNEKIT_FAULT": slow_first}
    search = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        metrics = tmp_path / "tiny" / "trials" / "00000" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.stat().st_size > 0):
            assert time.monotonic() < deadline and search.poll() is None, search.communicate()
            time.sleep(0.05)
        cluster.stop()
        stopped = time.monotonic()
        _, err = search.communicate(timeout=60)
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    assert search.returncode == 4, err
    assert time.monotonic() - stopped < 15  # trial 0 alone would have trained for 10 s more
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: lost the study's storage {cluster.url.split('@')[1]}: ")
    assert "rerun the same command once the database answers" in last and "Traceback" not in err

    cluster.start()
    import optuna

    from tunekit.study.storage import _driver_url

    study = optuna.load_study(study_name="tiny", storage=_driver_url(cluster.url))
    running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1 and "reason" not in running[0].user_attrs  # left as it was, not failed as an error

    again = _tunekit(*cmd[3:], "--json")
    assert again.returncode == 0, again.stderr
    assert f"trial {running[0].number} was left RUNNING" in again.stderr
    summary = json.loads(again.stdout)
    assert summary["states"]["COMPLETE"] == 4 and summary["states"]["RUNNING"] == 0
    study = optuna.load_study(study_name="tiny", storage=_driver_url(cluster.url))
    died = [t for t in study.trials if t.user_attrs.get("reason") == "worker_died"]
    assert len(died) == 1 and died[0].number == running[0].number


@needs_postgres
def test_eight_workers_on_one_database_reach_the_exact_total_with_few_connections(tmp_path, cluster):
    # 8 worker processes (each its own torch import: ~40 s on 2 cores) take 16 one-epoch trials of one study: exactly 16 complete, one baseline, no
    # params twice, nothing RUNNING. Each process holds at most 3 connections (its trial loop,
    # its heartbeat thread, the ask lock's), so 8 workers stay far below max_connections (100).
    config = tmp_path / "c.yaml"
    config.write_text(TINY.replace("trials: 3", "trials: 16").replace("epochs: 3", "epochs: 1"))
    peak, done = [0], threading.Event()

    def count_connections():
        while not done.is_set():
            with contextlib.suppress(Exception):
                peak[0] = max(peak[0], cluster.connections() - 1)  # not this query's own
            time.sleep(0.1)

    watcher = threading.Thread(target=count_connections)
    watcher.start()
    try:
        search = _tunekit(
            "search", config, "--storage", cluster.url, "--runs", tmp_path / "runs", "--workers", 8, "--json", "-q"
        )
    finally:
        done.set()
        watcher.join()
    assert search.returncode == 0, search.stderr
    assert json.loads(search.stdout)["states"] == {"COMPLETE": 16, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    import optuna

    from tunekit.study.storage import _driver_url

    trials = optuna.load_study(study_name="tiny", storage=_driver_url(cluster.url)).get_trials(deepcopy=False)
    assert len(trials) == 16 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 16
    assert len({t.user_attrs["worker"] for t in trials}) >= 2
    assert 0 < peak[0] <= 3 * 8 + 2  # + the parent's own (it created the study)


def test_a_grpc_proxy_url_is_refused_with_why(cli, write_config, runs):
    result = cli("search", write_config(), "--runs", runs, "--storage", "grpc://proxy:13000")
    assert result.exit_code == 2, result.stderr
    assert "error: --storage grpc://proxy:13000: Optuna's gRPC storage proxy is not supported" in result.stderr
    assert "point --storage at the database itself" in result.stderr and not (runs / "tiny").exists()


@needs_postgres
@pytest.mark.skipif(not LONG, reason="a frozen server costs ~25 s: TUNEKIT_LONG_FAULTS=1 (make bench)")
def test_a_database_that_freezes_mid_search_ends_it_after_the_storage_timeout(tmp_path, cluster):
    # The server's processes are SIGSTOPped while a trial trains: the connections stay open and
    # every packet is acknowledged by the kernel, so no TCP timeout fires and libpq would wait for
    # ever. The heartbeat's watchdog gives up after 3 x TUNEKIT_STORAGE_TIMEOUT (2 s here).
    config = tmp_path / "c.yaml"
    config.write_text(
        TINY.replace("trials: 3", "trials: 4\n  heartbeat: {interval: 0.5, grace: 3}").replace(
            "epochs: 3", "epochs: 100"
        )
    )
    env = {
        **os.environ,
        "TUNEKIT_STORAGE_TIMEOUT": "2",
        "TUNEKIT_FAULT": ",".join(f"0:{epoch}:sleep" for epoch in range(1, 101)),
    }
    cmd = [sys.executable, "-m", "tunekit", "search", str(config), "--storage", cluster.url, "--runs", str(tmp_path)]
    search = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        metrics = tmp_path / "tiny" / "trials" / "00000" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.stat().st_size > 0):
            assert time.monotonic() < deadline and search.poll() is None, search.communicate()
            time.sleep(0.05)
        cluster.pause()
        frozen = time.monotonic()
        _, err = search.communicate(timeout=60)
    finally:
        cluster.resume()
        if search.poll() is None:
            search.kill()
            search.wait()
    assert search.returncode == 4, err
    assert time.monotonic() - frozen < 20
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: lost the study's storage {cluster.url.split('@')[1]}: no answer for ")
    again = _tunekit(*cmd[3:], "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["states"]["COMPLETE"] == 4 and "trial 0 was left RUNNING" in again.stderr
