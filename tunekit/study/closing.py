"""How a trial taken by a worker is closed: told its outcome, retried later, or failed, never left RUNNING."""

from __future__ import annotations

import contextlib
import errno
import signal
from typing import Any

import optuna

from tunekit import reasons
from tunekit.errors import DiskFull
from tunekit.report.summary import pick_best
from tunekit.runs import StudyDir
from tunekit.study import faults
from tunekit.study.best import write_best
from tunekit.study.liveness import requeue
from tunekit.study.storage import stored_trial


def tell(study, study_dir: StudyDir, trial, state: str, outcome: Any, best_now=None) -> None:
    """Tell the trial's outcome; a trial that took the lead rewrites best.yaml. `best_now`: how the
    caller finds the best trial cheaply (a worker's Tally), else the study is asked."""
    if state == "FAIL" and outcome == reasons.TIMEOUT:
        retry_later(study, trial, reasons.TIMEOUT)  # the budget cut it, not its config: it runs again next time
        return
    if state != "COMPLETE":
        study.tell(trial, state=getattr(optuna.trial.TrialState, state))
        return
    study.tell(trial, outcome)
    faults.fire_at("tell", trial.number)
    best = best_now() if best_now else pick_best(study)
    if best is not None and best.number == trial.number:
        write_best(study, study_dir, best)  # only when this trial took the lead


def retry_later(study, trial, reason: str = reasons.INTERRUPTED) -> None:
    """Close a running trial as cut short (`interrupted`, `disk_full`, `timeout`) and queue its params to run
    again: it keeps its slot (it does not count) and its retry count.

    Signals are held meanwhile: a second Ctrl-C (a terminal's, then the --workers parent's) landing
    between the tell and the enqueue would otherwise lose the params. A full disk can make these
    writes fail too; the trial then stays RUNNING and the next run recovers it as worker_died."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        with contextlib.suppress(Exception):  # already closed (told, or by another worker): nothing to record
            trial.set_user_attr("reason", reason)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            requeue(study, trial, died=False)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def closed_elsewhere(study, trial) -> bool:
    """Did another worker finish this trial (as worker_died) while we held it?"""
    try:
        stored = stored_trial(study, trial)
    except Exception:
        return False
    return stored.state.is_finished() and stored.user_attrs.get("reason") == reasons.WORKER_DIED


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


def close_failed(study, trial) -> None:
    """Whatever escaped (a storage error, a bug): never leave the trial RUNNING."""
    with contextlib.suppress(Exception):
        trial.set_user_attr("reason", reasons.ERROR)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
