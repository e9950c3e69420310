"""Opening a study's storage: the journal file under runs/<study>/ by default, or a database URL.

Torch-free: `tunekit report` and `tunekit list` use this.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._file import BaseJournalFileLock, get_lock_file
from optuna.storages.journal._storage import JournalOperation as Op

from tunekit.errors import DataError, StateError, UsageError
from tunekit.runs import FILE_MODE, StudyDir, no_such_study, open_lock, open_nofollow, write_text


def journal_is_torn(path: Path) -> bool:
    """A crash mid-append leaves a last line without its newline; Optuna would then lose every later append."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def bad_lines(path: Path) -> list[int]:
    """1-based numbers of the journal's lines that are not a JSON record (a torn last line included)."""
    return [n for n, line in enumerate(path.read_bytes().splitlines(), 1) if not _is_record(line)]


REPAIR_HINT = "run `tunekit search CONFIG --study NAME --repair` to back it up and mend it"


def repair_journal(path: Path) -> tuple[Path, str]:
    """Back the journal up, then keep every complete record: a last line that is whole but lacks its
    newline gets one; a torn or corrupt line is set aside (it stays in the backup).
    Returns the backup's path and what was done, for the user."""
    backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
    shutil.copy2(path, backup)
    lines = path.read_bytes().splitlines()
    kept = [line for line in lines if _is_record(line)]
    dropped = [n for n, line in enumerate(lines, 1) if not _is_record(line)]
    with open(path, "r+b") as f:
        f.write(b"".join(line + b"\n" for line in kept))
        f.truncate()
        f.flush()
        os.fsync(f.fileno())
    if dropped:
        done = f"set aside line(s) {', '.join(map(str, dropped))} of {len(lines)} (not a complete record)"
    else:
        done = "added the missing final newline; every record kept"
    return backup, done


class _FlockLock(BaseJournalFileLock):
    """The journal's writer lock: an flock on `<journal>.flock`, which the kernel releases when its
    holder dies, however it dies.

    Optuna's default lock is a symlink `<journal>.lock` to the journal, deemed stale only after 30 s
    of the link's target unchanged; with a relative --runs the link's target does not resolve from
    inside the study folder, the stale check never fires, and every later process spins forever on
    a SIGKILLed holder's lock. An flock cannot be left behind. The lock file is opened without
    following links and never truncated (study/runs.py open_lock). Each thread opens its own
    descriptor, so the heartbeat thread and the trial loop exclude each other as processes do."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".flock")
        self._held = threading.local()

    def acquire(self) -> bool:
        fd = open_lock(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held.fd = fd
        return True

    def release(self) -> None:
        fd, self._held.fd = self._held.fd, None
        os.close(fd)


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
            sync = not all(log.get("op_code") in deferred for log in logs)
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"  # Optuna's line format
            with get_lock_file(self._lock):
                fd = open_nofollow(Path(self._file_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
                with os.fdopen(fd, "ab") as f:
                    f.write(text.encode("utf-8"))
                    if sync:
                        f.flush()
                        os.fsync(f.fileno())

    return SyncAtBoundaries(str(path), lock_obj=_FlockLock(path))


def open_storage(study_dir: StudyDir, url: str | None = None, repair: bool = False, log=None):
    """The Optuna storage for a study: `url` when given, else runs/<study>/optuna.journal."""

    if url and url.split(":", 1)[0] == "grpc":
        raise UsageError(
            f"--storage {_shown(url)}: Optuna's gRPC storage proxy is not supported: the exact trial total across "
            "machines needs the database's own lock (a PostgreSQL advisory lock), which the proxy does not pass on",
            "point --storage at the database itself (postgresql://...); see README 'Many workers'",
        )
    global _in_use
    if url:
        _in_use = url
        try:
            # tunekit keeps its own heartbeats (study/liveness.py), which work outside study.optimize too.
            return optuna.storages.RDBStorage(_driver_url(url), engine_kwargs=engine_kwargs(url))
        except Exception as exc:  # driver missing, server down, bad URL: all environment problems
            raise DataError(
                f"cannot open storage {_shown(url)}: {_first_line(exc)}",
                "check the URL, that the server is up and reachable from here, and that the database driver "
                "is installed (pip install 'tunekit[postgres]')",
            ) from None
    _in_use = None
    journal = study_dir.journal
    if repair and journal.exists() and (journal_is_torn(journal) or bad_lines(journal)):
        backup, done = repair_journal(journal)
        line = f"repaired {journal}: {done} (backup: {backup.name})"
        (log or (lambda text: print(text, file=sys.stderr)))(line)  # search's log: silent under -q
    if journal_is_torn(journal):
        raise StateError(
            f"{journal} ends in a torn line (a crash mid-write); new trials would be lost",
            REPAIR_HINT,
        )
    journal.parent.mkdir(parents=True, exist_ok=True)
    try:
        return JournalStorage(_journal_backend(journal))
    except StateError:
        raise
    except Exception:
        bad = bad_lines(journal)
        where = f"line(s) {', '.join(map(str, bad[:5]))} of {journal} are not complete records" if bad else None
        raise StateError(f"cannot read study journal {journal}: {where or 'unreadable'}", REPAIR_HINT) from None


def _driver_url(url: str) -> str:
    """`postgresql://` means psycopg2 to SQLAlchemy; use psycopg 3 (the `postgres` extra) when that is what is installed."""
    if url.startswith("postgresql://"):
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


CONNECT_TIMEOUT_S = 10.0
TIMEOUT_ENV = "TUNEKIT_STORAGE_TIMEOUT"


def storage_timeout() -> float:
    """Seconds a database may take to accept a connection (TUNEKIT_STORAGE_TIMEOUT, default 10).
    A statement may take 6x that (60 s), and a connection whose server stopped answering is
    dropped after about 3x (30 s). A bad value is ignored for the default."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, CONNECT_TIMEOUT_S))
    except ValueError:
        return CONNECT_TIMEOUT_S
    return value if 1 <= value <= 86400 else CONNECT_TIMEOUT_S


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine settings for a study's database, so that a server that is down, silent or
    lost mid-study ends a command within seconds instead of hanging in the driver's defaults
    (libpq waits forever for a server that accepts TCP and never answers).

    - connect: `connect_timeout` (libpq, MySQL drivers);
    - a statement (a tell, the ask lock's wait): PostgreSQL `statement_timeout`, MySQL read/write timeouts;
    - a connection that goes quiet (host down, cable cut): TCP keepalives and `tcp_user_timeout`;
    - a connection idle through a long trial, then stale (server restarted): `pool_pre_ping`
      replaces it before use, so the trial's tell does not fail on it.
    A parameter the URL's own query sets (`?connect_timeout=30`) wins. Each process keeps a small
    pool: the trial loop and the heartbeat thread use one connection each (the ask lock a third)."""
    kind = url.split(":", 1)[0].split("+", 1)[0]
    if kind not in ("postgresql", "mysql"):
        return {}
    timeout = storage_timeout()
    query = set(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query))
    if kind == "postgresql":
        args: dict[str, Any] = {
            "connect_timeout": max(2, round(timeout)),  # libpq's minimum is 2 s
            "keepalives": 1,
            "keepalives_idle": max(1, round(timeout)),
            "keepalives_interval": max(1, round(timeout / 3)),
            "keepalives_count": 3,
            "tcp_user_timeout": round(timeout * 3000),  # ms that sent data may stay unacknowledged
            "options": f"-c statement_timeout={round(timeout * 6000)}",
        }
    elif url.split(":", 1)[0] in ("mysql", "mysql+pymysql", "mysql+mysqldb"):  # the drivers that take these names
        args = {
            "connect_timeout": round(timeout),
            "read_timeout": round(timeout * 6),
            "write_timeout": round(timeout * 6),
        }
    else:
        args = {}
    connect_args = {k: v for k, v in args.items() if k not in query}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4, "connect_args": connect_args}


_in_use: str | None = None  # the database URL this process opened last, to name it in storage_lost


def _shown(url: str) -> str:
    shown = url.split("@")[-1]  # never the user:password part
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _first_line(exc: BaseException) -> str:
    while exc.__cause__ is not None and not str(exc).strip():
        exc = exc.__cause__
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def storage_lost(exc: BaseException) -> DataError | None:
    """The error to report when `exc` (or what caused it) is the study's database going away,
    stopping to answer, or refusing connections in the middle of a command; None for anything else.
    Optuna wraps a failed commit in StorageInternalError, hence the walk along the causes."""
    if _in_use is None or _in_use.split(":", 1)[0].split("+", 1)[0] not in ("postgresql", "mysql"):
        return None  # SQLite's errors ("database is locked") are not a server gone away
    try:
        import sqlalchemy
    except ImportError:
        return None
    sa = sqlalchemy.exc
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        gone = isinstance(cause, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError)) or (
            isinstance(cause, sa.DBAPIError) and cause.connection_invalidated
        )
        if gone:
            return DataError(
                f"lost the study's storage {_shown(_in_use)}: {_first_line(cause)}",
                "finished trials are saved; trials that were running stay RUNNING and are queued again by the next "
                "run: rerun the same command once the database answers",
            )
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def silent_storage(quiet: float) -> DataError:
    """The error for a database that accepted a call and has not answered it for `quiet` seconds."""
    where = _shown(_in_use) if _in_use else "the study's database"
    return DataError(
        f"lost the study's storage {where}: no answer for {quiet:.0f} s (server hung or unreachable)",
        "finished trials are saved; trials that were running stay RUNNING and are queued again by the next "
        f"run: rerun the same command once the database answers ({TIMEOUT_ENV} sets the wait: 3x its seconds)",
    )


_ENGINES: dict[str, Any] = {}


@contextlib.contextmanager
def database_lock(url: str, study: str):
    """One holder at a time across machines for a study in a database: the count-then-ask of the
    next trial, and the study's creation (its schema, its baseline). A PostgreSQL advisory lock or
    a MySQL named lock, held on one connection the server releases if the holder dies. SQLite lives
    on one machine, where the callers' file lock already serializes."""
    kind = url.split(":", 1)[0].split("+", 1)[0]
    if kind not in ("postgresql", "mysql"):
        yield
        return
    global _in_use
    _in_use = url
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"tunekit:{study}".encode()).digest()[:8], "big", signed=True)
    try:  # a missing driver (MySQLdb) raises at create_engine, an unreachable server at connect
        engine = _ENGINES.get(url)
        if engine is None:
            settings = engine_kwargs(url)
            engine = _ENGINES[url] = sqlalchemy.create_engine(
                _driver_url(url), poolclass=sqlalchemy.pool.NullPool, connect_args=settings["connect_args"]
            )
        connection = engine.connect()
    except Exception as exc:
        raise DataError(
            f"cannot open storage {_shown(url)}: {_first_line(exc)}",
            "check the URL, that the server is up and reachable from here, and that its driver is installed "
            "(PostgreSQL: pip install 'tunekit[postgres]'; MySQL: pip install mysqlclient)",
        ) from None
    with connection:
        if kind == "postgresql":
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        else:
            connection.execute(sqlalchemy.text("SELECT GET_LOCK(:k, -1)"), {"k": f"tunekit:{study}"[:64]})
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a lost connection has released it already
                unlock = "SELECT pg_advisory_unlock(:k)" if kind == "postgresql" else "SELECT RELEASE_LOCK(:k)"
                connection.execute(
                    sqlalchemy.text(unlock), {"k": key if kind == "postgresql" else f"tunekit:{study}"[:64]}
                )


def describe_storage(study_dir: StudyDir, url: str | None) -> str:
    url = remembered_url(study_dir, url)
    shown = url.split("@")[-1] if url else str(study_dir.journal)  # never the user:password part
    return shown if len(shown) <= 120 else shown[:117] + "..."


def remember_url(study_dir: StudyDir, url: str) -> None:
    """Record a database study's URL in its folder, readable by this user only."""
    path = study_dir.storage_url
    if path.is_file() and path.read_text().strip() == url:
        return
    write_text(path, url + "\n")
    os.chmod(path, 0o600)


def remembered_url(study_dir: StudyDir, url: str | None) -> str | None:
    """`--storage` if given, else the URL recorded when the study was created with one."""
    if url:
        return url
    path = study_dir.storage_url
    if not path.exists() or path.is_symlink():
        return None  # StudyDir refuses a linked storage.url where it is written
    info = path.stat()
    # The URL is opened as written: only one that this user wrote (as tunekit does, mode 0600) is
    # trusted; one planted by another user of a shared runs/ folder is not.
    if not path.is_file() or info.st_uid != os.geteuid() or info.st_mode & 0o022 or info.st_size > 4096:
        raise StateError(
            f"{path} is not a storage URL tunekit wrote (another owner, writable by others, or too big)",
            "pass --storage URL yourself, or remove the file",
        )
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except UnicodeDecodeError:
        raise StateError(f"{path} is not text", "pass --storage URL yourself, or remove the file") from None


def load_study(study_dir: StudyDir, url: str | None = None):
    """Load an existing study for reading (report, train --best)."""

    url = remembered_url(study_dir, url)
    if not url and not study_dir.exists():
        raise no_such_study(study_dir.runs, study_dir.name, "run `tunekit search` first, or check --runs / --study")
    storage = open_storage(study_dir, url)
    try:
        return optuna.load_study(study_name=study_dir.name, storage=storage)
    except KeyError:
        raise StateError(
            f"{describe_storage(study_dir, url)} holds no study named '{study_dir.name}'",
            "a copied or renamed study folder keeps its old name inside: use that name, or search anew",
        ) from None


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


def trials_from(study, start: int) -> list:
    """The study's trials numbered `start` and up, as the storage has them now (not copies: read only).

    A worker reads the study after every trial; `study.get_trials` builds the list of every trial
    each time, which at 10,000 trials is most of a trial's overhead. The journal keeps its trials in
    order, so the tail is a slice; other storages give the whole list, sliced."""
    storage = study._storage
    if isinstance(storage, JournalStorage):
        with storage._thread_lock:
            storage._sync_with_backend()
            replayed = storage._replay_result
            ids = replayed._study_id_to_trial_ids[study._study_id]
            return [replayed._trials[i] for i in ids[start:]]
    return study.get_trials(deepcopy=False)[start:]


def ask(study, queued: bool):
    """`study.ask()`. When the caller knows no trial is queued (`queued` False: a worker's Tally, read
    under the ask lock, saw none), a journal study skips Optuna's search of every trial for a
    WAITING one, which is O(n) per ask (~2 ms at 10,000 trials), and creates the trial as ask would."""
    if queued or not isinstance(study._storage, JournalStorage):
        return study.ask()
    study._thread_local.cached_all_trials = None  # as ask does: the next read syncs
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id))
