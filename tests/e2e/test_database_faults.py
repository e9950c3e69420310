"""A study's database that is unreachable, silent, or lost in the middle of a search: the command
ends within seconds with one line naming the storage (never its password) and exit code 4, and
the study recovers once the database is back. Many workers share one database study exactly.

The lost-mid-study and many-worker journeys start a throwaway PostgreSQL cluster (tests/postgres.py)."""

from __future__ import annotations

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
