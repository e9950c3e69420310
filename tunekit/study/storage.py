"""Opening a study's storage: the journal file under runs/<study>/ by default, or a database URL.

Torch-free: `tunekit report` and `tunekit list` use this.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation as Op

from tunekit.errors import DataError, StateError
from tunekit.runs import StudyDir


def journal_is_torn(path: Path) -> bool:
    """A crash mid-append leaves a last line without its newline; Optuna would then lose every later append."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def repair_journal(path: Path) -> Path:
    """Back the journal up, then cut its torn last line. Returns the backup's path."""
    backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
    shutil.copy2(path, backup)
    data = path.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    with open(path, "r+b") as f:
        f.truncate(len(keep))
        f.flush()
        os.fsync(f.fileno())
    return backup


def _journal_backend(path: Path):
    """Optuna's journal file, fsynced where a trial (or the study) begins or ends, not on every line.

    Optuna fsyncs each appended line: ~11 per trial (its params one by one, its attributes, its
    per-epoch reports), 0.4 ms each on this machine's disk and several ms on many laptops and
    network disks. An fsync flushes every earlier write to the file as well, so syncing the lines
    that create or finish a trial makes everything a finished trial recorded durable at the moment
    it is told. What a power cut can still take is the in-between lines of trials running at that
    moment; they are failed as worker_died and queued again on the next run, as after any crash.
    A process that crashes loses nothing either way: its writes are already in the OS."""

    deferred = {Op.SET_TRIAL_PARAM, Op.SET_TRIAL_INTERMEDIATE_VALUE, Op.SET_TRIAL_USER_ATTR, Op.SET_TRIAL_SYSTEM_ATTR}

    class SyncAtBoundaries(JournalFileBackend):
        def append_logs(self, logs: list[dict]) -> None:
            if not all(log.get("op_code") in deferred for log in logs):
                return super().append_logs(logs)
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"  # Optuna's line format
            with get_lock_file(self._lock), open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))

    return SyncAtBoundaries(str(path))


def open_storage(study_dir: StudyDir, url: str | None = None, repair: bool = False):
    """The Optuna storage for a study: `url` when given, else runs/<study>/optuna.journal."""

    if url:
        try:
            # tunekit keeps its own heartbeats (study/liveness.py), which work outside study.optimize too.
            return optuna.storages.RDBStorage(_driver_url(url))
        except Exception as exc:  # driver missing, server down, bad URL: all environment problems
            raise DataError(
                f"cannot open storage {url.split('@')[-1]}: {str(exc).splitlines()[0]}",
                "check the URL and that the database driver is installed (pip install 'tunekit[postgres]')",
            ) from None
    journal = study_dir.journal
    if journal_is_torn(journal):
        if not repair:
            raise StateError(
                f"{journal} ends in a torn line (a crash mid-write); new trials would be lost",
                "rerun with --repair to back it up and cut the partial line",
            )
        backup = repair_journal(journal)

        print(f"repaired {journal} (backup: {backup.name})", file=sys.stderr)
    journal.parent.mkdir(parents=True, exist_ok=True)
    try:
        return JournalStorage(_journal_backend(journal))
    except Exception as exc:
        raise StateError(f"cannot open study journal {journal}: {exc}") from None


def _driver_url(url: str) -> str:
    """`postgresql://` means psycopg2 to SQLAlchemy; use psycopg 3 (the `postgres` extra) when that is what is installed."""
    if url.startswith("postgresql://"):
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def describe_storage(study_dir: StudyDir, url: str | None) -> str:
    return url.split("@")[-1] if url else str(study_dir.journal)


def load_study(study_dir: StudyDir, url: str | None = None):
    """Load an existing study for reading (report, train --best)."""

    if not url and not study_dir.exists():
        raise StateError(
            f"no study '{study_dir.name}' under {study_dir.runs}/",
            "run `tunekit search` first, or check --runs / --study",
        )
    storage = open_storage(study_dir, url)
    try:
        return optuna.load_study(study_name=study_dir.name, storage=storage)
    except KeyError:
        raise StateError(f"storage holds no study named '{study_dir.name}'") from None


# Optuna's public API reaches a trial through the Study and the Trial object that asked it. A worker
# also writes to trials it does not hold (its heartbeat thread; recovering a dead worker's trial) and
# rereads a trial another worker may have closed, which takes the storage and the trial's id. These
# three are tunekit's only use of Optuna's private attributes (tests/test_layout.py checks).


def storage_of(study):
    return study._storage


def trial_id(trial) -> int:
    return trial._trial_id


def stored_trial(study, trial):
    """The trial as the storage has it now, whoever wrote it last."""
    return study._storage.get_trial(trial._trial_id)
