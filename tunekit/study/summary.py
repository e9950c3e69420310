"""What a study learned, as plain data in SPEC §6's shape. Torch-free: the report builds on this."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any


def _state(trial) -> str:
    return trial.state.name


def trial_row(trial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": _state(trial),
        "value": trial.value if trial.values is not None and len(trial.values) == 1 else trial.values,
        "params": dict(trial.params),
        "reason": trial.user_attrs.get("reason"),
        "duration_s": trial.user_attrs.get("duration_s")
        if trial.user_attrs.get("duration_s") is not None
        else (trial.duration.total_seconds() if trial.duration else None),
        "best_epoch": trial.user_attrs.get("best_epoch"),
    }


def importance(study) -> dict[str, float]:
    """Each parameter's share of the metric's variance (Optuna's PED-ANOVA); {} when too few trials."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3 or not any(t.params for t in complete):
        return {}
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}  # e.g. every completed trial has the same params


def summarize(study, storage: str) -> dict[str, Any]:
    import optuna

    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    states = Counter(_state(t) for t in trials)
    reasons = Counter(t.user_attrs.get("reason") for t in trials if t.state == optuna.trial.TrialState.FAIL)
    best = None
    try:
        bt = study.best_trial
        best = {"number": bt.number, "value": bt.value, "params": dict(bt.params), "config": bt.user_attrs.get("config"),
                "metrics": bt.user_attrs.get("metrics"), "best_epoch": bt.user_attrs.get("best_epoch")}
    except ValueError:
        pass
    return {
        "study": study.study_name,
        "storage": storage,
        "metric": attrs.get("tunekit.metric"),
        "direction": study.direction.name.lower(),
        "n_trials": len(trials),
        "states": {s: states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        "reasons": dict(reasons.most_common()),
        "best": best,
        "trials": [trial_row(t) for t in trials],
        "importance": importance(study),
    }


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
