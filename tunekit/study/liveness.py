"""Who is running which trial, and which RUNNING trials nobody is running any more.

Optuna's journal storage has no heartbeat, and its RDB heartbeat works only inside
`study.optimize`, which tunekit does not use. So every running trial records its worker
(host:pid) and a heartbeat timestamp, refreshed by a background thread. A RUNNING trial whose
worker process is gone (same host) or whose heartbeat is stale (any host) is dead: it is failed
with reason `worker_died` and its params are queued to run again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import optuna

from tunekit import reasons
from tunekit.report.summary import pick_best
from tunekit.study.storage import storage_lost, storage_of, trial_id, trials_from

HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0  # eight missed heartbeats: the worker is gone, whatever host it was on

HOST = socket.gethostname()


def worker_id() -> str:
    return f"{HOST}:{os.getpid()}"


class Heartbeat:
    """This worker's heartbeat: one background thread, for the worker's life, that refreshes
    `heartbeat` on each trial the worker is running (one thread per trial cost ~1 ms a trial
    to start and join).

    On a database it is also the watchdog for a server that stops answering mid-study (hung, or
    SIGSTOPped: its host's kernel still acknowledges every packet, so no TCP timeout fires and
    libpq waits for ever): when no trial runs it makes `probe`, a cheap read, each interval, and
    when one of its calls has not returned after `silent_after` seconds, `on_silent` is called
    (it ends the process: whatever the main thread waits on will not answer either)."""

    def __init__(self, storage, interval: float = HEARTBEAT_S, probe=None, silent_after=None, on_silent=None):
        self.storage, self.interval = storage, interval
        self.probe, self.silent_after, self.on_silent = probe, silent_after, on_silent
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._calling_since: float | None = None
        self._thread = threading.Thread(target=self._beat, name="tunekit-heartbeat", daemon=True)
        self._watchdog = None
        if silent_after is not None and on_silent is not None:
            self._watchdog = threading.Thread(target=self._watch, name="tunekit-storage-watchdog", daemon=True)

    def __enter__(self):
        _lost.clear()  # a previous command in this process (tests) lost its database, not this one
        self._thread.start()
        if self._watchdog is not None:
            self._watchdog.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)

    @contextlib.contextmanager
    def running(self, trial_ids: list[int]):
        """Keep the trials (claimed by `claim`) alive while the block runs. Their first beat is their
        start time (is_dead reads it when no heartbeat is recorded yet): one journal write saved per trial."""
        with self._lock:
            self._running.update(trial_ids)
        try:
            yield
        finally:
            with self._lock:
                self._running.difference_update(trial_ids)

    def release(self, trial_ids: list[int]) -> None:
        """These trials are about to be told: stop beating for them (a beat in flight is waited for)."""
        with self._lock:
            self._running.difference_update(trial_ids)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                trial_ids = sorted(self._running)
            self._calling_since = time.monotonic()
            try:
                self._beat_once(trial_ids)
            finally:
                self._calling_since = None

    def _beat_once(self, trial_ids: list[int]) -> None:
        if not trial_ids and self.probe is not None:
            try:
                self.probe()
            except Exception as exc:
                if storage_lost(exc) is not None:
                    _lost[:] = [exc]
                return
            _lost.clear()
            return
        for tid in trial_ids:
            try:
                # Under the lock, and only while the trial is still this worker's: leaving `running`
                # waits for a beat in flight, so no beat lands after the trial was told.
                with self._lock:
                    if tid not in self._running:
                        continue
                    self.storage.set_trial_user_attr(tid, "heartbeat", time.time())
            except Exception as exc:
                if storage_lost(exc) is not None:
                    _lost[:] = [exc]  # the trial stops at its next epoch (raise_if_storage_lost)
                    return
                continue  # told in the meantime: nothing left to keep alive
            else:
                _lost.clear()  # the database answers again

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            since = self._calling_since
            if since is not None and time.monotonic() - since > self.silent_after:
                self.on_silent(time.monotonic() - since)
                return


_lost: list[BaseException] = []  # what the heartbeat got when the study's database went away


def raise_if_storage_lost() -> None:
    """Called at each epoch's end: a trial that no longer has a database to be told to stops now,
    instead of training to its end (a trial that reports each epoch to a pruner would find out by
    itself; one that does not would otherwise train on for nothing)."""
    if _lost:
        raise _lost[0]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def claim(storage, trial_ids: list[int]) -> None:
    """Mark freshly asked trials as this worker's, still under the ask lock that asked them."""
    for tid in trial_ids:
        storage.set_trial_user_attr(tid, "worker", worker_id())


def is_dead(
    trial, now: float | None = None, stale_after: float = STALE_AFTER_S, unclaimed_is_dead: bool = False
) -> bool:
    """A RUNNING trial whose worker is gone.

    `unclaimed_is_dead`: the caller holds the journal's ask lock, under which every trial is asked
    and claimed; a RUNNING trial nobody claimed was then asked by a process killed before claiming it."""
    now = now or time.time()
    worker = trial.user_attrs.get("worker")
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    beat = trial.user_attrs.get("heartbeat", started)  # before the first beat, the trial's start counts as one
    if worker is None:
        # Asked but never claimed: on a database (no shared lock), give its worker the grace from its start.
        return unclaimed_is_dead or now - started > stale_after
    host, _, pid = worker.rpartition(":")
    if host == HOST and pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
        return True
    return now - float(beat) > stale_after


def requeue(study, trial, *, died: bool) -> None:
    """Queue a closed trial's params to run again. Only a death counts as a retry (study.max_retries):
    a trial cut by Ctrl-C or a full disk did nothing wrong, and keeps its count."""
    retries = trial.user_attrs.get("retries", 0) + (1 if died else 0)
    study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number, "retries": retries})


def recover_dead_trials(
    study,
    log,
    max_retries: int = 2,
    unclaimed_is_dead: bool = False,
    stale_after: float = STALE_AFTER_S,
    running: list | None = None,
) -> int:
    """Fail every dead RUNNING trial and queue its params again, unless it already died `max_retries`
    times: then it fails for good (counted, reason worker_died). Returns how many were recovered.
    `running`: the study's RUNNING trials, when the caller has them (a Tally's)."""

    recovered = 0
    if running is None:
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        if not is_dead(trial, stale_after=stale_after, unclaimed_is_dead=unclaimed_is_dead):
            continue
        retries = trial.user_attrs.get("retries", 0)
        final = retries >= max_retries
        try:
            storage_of(study).set_trial_user_attr(trial_id(trial), "reason", reasons.WORKER_DIED)
            if final:
                storage_of(study).set_trial_user_attr(trial_id(trial), "retries_exhausted", True)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, RuntimeError):
            continue  # another worker recovered it first
        who = trial.user_attrs.get("worker", "a worker")
        if final:
            log(
                f"trial {trial.number} was left RUNNING by {who} that is gone, after {retries} retries: "
                "failed (worker_died), not retried again (study.max_retries)"
            )
        else:
            requeue(study, trial, died=True)
            log(f"trial {trial.number} was left RUNNING by {who} that is gone: failed (worker_died), queued again")
        recovered += 1
    return recovered


def counted(trial) -> bool:
    """Trials that count toward the study's total: running or finished, except those being retried."""

    if trial.state == optuna.trial.TrialState.WAITING:
        return False
    retried = trial.user_attrs.get("reason") in reasons.RETRIED and not trial.user_attrs.get("retries_exhausted")
    return not (trial.state == optuna.trial.TrialState.FAIL and retried)


def live_workers(study) -> list[str]:
    """Workers running a trial of this study right now (their heartbeat is fresh)."""

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return sorted({t.user_attrs["worker"] for t in running if "worker" in t.user_attrs and not is_dead(t)})


class Tally:
    """The study's totals after every trial, without rereading every trial each time.

    A finished trial never changes again (Optuna refuses writes to it), so the trials up to the
    first unfinished one are summed once and kept: each `refresh` reads only the trials from there
    on (running, queued, and those finished out of order), a few, not the whole study. The figures
    are the same as summing over `study.get_trials()`: tests/study/test_tally.py checks."""

    def __init__(self, study):
        self.study = study
        self.single = len(study.directions) == 1
        self.maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        self.settled = 0  # trials [0, settled) are finished; their figures are below
        self._counted = 0
        self._best = None  # the settled trials' best (single objective), the first of equals
        self.tail: list = []
        self.refresh()

    def _better(self, trial, than) -> bool:
        if than is None:
            return True
        return trial.value > than.value if self.maximize else trial.value < than.value

    def refresh(self) -> Tally:
        tail = trials_from(self.study, self.settled)
        i = 0
        while i < len(tail) and tail[i].state.is_finished():
            trial = tail[i]
            self._counted += counted(trial)
            if self.single and trial.state == optuna.trial.TrialState.COMPLETE and self._better(trial, self._best):
                self._best = trial
            i += 1
        self.settled += i
        self.tail = tail[i:]
        return self

    def done(self) -> int:
        """Trials that count toward the study's total (see `counted`)."""
        return self._counted + sum(map(counted, self.tail))

    def finished(self) -> int:
        """Counted trials that have ended."""
        return self._counted + sum(1 for t in self.tail if t.state.is_finished() and counted(t))

    def queued(self) -> bool:
        """Is a trial waiting to run (the baseline, a retry, a warm start)? All of them are in the tail."""
        return any(t.state == optuna.trial.TrialState.WAITING for t in self.tail)

    def running(self) -> list:
        return [t for t in self.tail if t.state == optuna.trial.TrialState.RUNNING]

    def best(self):
        """The study's best trial, as `report.summary.pick_best` gives it (None before any completes)."""
        if not self.single:
            return pick_best(self.study)  # a Pareto front: not kept incrementally
        best = self._best
        for trial in self.tail:
            if trial.state == optuna.trial.TrialState.COMPLETE and self._better(trial, best):
                best = trial
        return best
