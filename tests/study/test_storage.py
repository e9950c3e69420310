"""The study's journal: Optuna's own file format, fsynced where trials begin and end."""

import json
import os

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tests.conftest import TINY

CREATE_TRIAL, SET_TRIAL_STATE_VALUES = 4, 6  # optuna.storages.journal._storage.JournalOperation
DEFERRED = {5, 7, 8, 9}  # a trial's params, per-epoch reports and attributes


def test_journal_is_fsynced_at_trial_boundaries_only_and_stays_plain_optuna(cli, write_config, runs, monkeypatch):
    journal = runs / "tiny" / "optuna.journal"
    synced_sizes = []  # the journal's size at each of its fsyncs
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(journal.resolve()):
            synced_sizes.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    config = write_config(TINY.replace("pruner: {name: none}", "pruner: {name: median}"))  # per-epoch reports too
    assert cli("search", config, "--runs", runs, "-q").exit_code == 0

    lines = journal.read_bytes().splitlines(keepends=True)
    ops = [json.loads(line)["op_code"] for line in lines]
    assert {CREATE_TRIAL, SET_TRIAL_STATE_VALUES, 5, 7, 8} <= set(ops)
    ends = [sum(map(len, lines[: i + 1])) for i in range(len(lines))]  # file size after each line
    # Every line that is not deferred was fsynced as it was written, deferred lines never by themselves ...
    assert synced_sizes == [end for end, op in zip(ends, ops) if op not in DEFERRED]
    assert len(synced_sizes) < len(lines) / 2
    # ... so each trial's last line, its state, was on disk with everything before it when it was told.
    assert all(end in synced_sizes for end, op in zip(ends, ops) if op == SET_TRIAL_STATE_VALUES)

    plain = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert [t.state.name for t in plain.trials] == ["COMPLETE"] * 3 and all(
        len(t.intermediate_values) == 3 for t in plain.trials
    )
    assert all("result" in t.user_attrs and "optimizer.lr" in t.params for t in plain.trials)


def test_database_engines_get_timeouts_a_small_pool_and_the_urls_own_settings_win(monkeypatch):
    from tunekit.study.storage import engine_kwargs

    plain = engine_kwargs("postgresql://u@h/db")
    assert plain["pool_pre_ping"] and plain["pool_size"] + plain["max_overflow"] <= 6
    args = plain["connect_args"]
    assert args["connect_timeout"] == 10 and args["options"] == "-c statement_timeout=60000"
    assert args["keepalives"] == 1 and args["tcp_user_timeout"] == 30000
    assert engine_kwargs("postgresql://u@h/db?connect_timeout=30")["connect_args"].get("connect_timeout") is None
    monkeypatch.setenv("TUNEKIT_STORAGE_TIMEOUT", "2")
    assert engine_kwargs("postgresql+psycopg://u@h/db")["connect_args"]["options"] == "-c statement_timeout=12000"
    assert engine_kwargs("mysql+pymysql://u@h/db")["connect_args"] == {
        "connect_timeout": 2,
        "read_timeout": 12,
        "write_timeout": 12,
    }
    monkeypatch.setenv("TUNEKIT_STORAGE_TIMEOUT", "soon")
    assert engine_kwargs("postgresql://u@h/db")["connect_args"]["connect_timeout"] == 10  # a bad value: the default
    assert engine_kwargs("sqlite:///x.db") == {}  # one machine, no network to wait on
