"""How a trial taken by a worker is closed: told its outcome, retried later, or failed, never left RUNNING."""

from __future__ import annotations

import contextlib
from typing import Any

import optuna

from tunekit import reasons
from tunekit.report.summary import pick_best
from tunekit.runs import StudyDir
from tunekit.study.best import write_best
from tunekit.study.storage import stored_trial


def tell(study, study_dir: StudyDir, trial, state: str, outcome: Any) -> None:
    if state != "COMPLETE":
        study.tell(trial, state=getattr(optuna.trial.TrialState, state))
        return
    study.tell(trial, outcome)
    best = pick_best(study)
    if best is not None and best.number == trial.number:
        write_best(study, study_dir)  # only when this trial took the lead


def retry_later(study, trial) -> None:
    """Close a running trial as interrupted and queue its params to run again (it does not count)."""
    with contextlib.suppress(Exception):  # already closed (told, or by another worker): nothing to record
        trial.set_user_attr("reason", reasons.INTERRUPTED)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})


def closed_elsewhere(study, trial) -> bool:
    """Did another worker finish this trial (as worker_died) while we held it?"""
    try:
        stored = stored_trial(study, trial)
    except Exception:
        return False
    return stored.state.is_finished() and stored.user_attrs.get("reason") == reasons.WORKER_DIED


def close_failed(study, trial) -> None:
    """Whatever escaped (a full disk, a storage error): never leave the trial RUNNING."""
    with contextlib.suppress(Exception):
        trial.set_user_attr("reason", reasons.ERROR)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
