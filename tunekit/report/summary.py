"""What a study learned, as plain data in SPEC §6's shape. Torch-free: the report builds on this."""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections import Counter
from typing import Any

import optuna

from tunekit.config.derive import any_base, space_of, trial_config
from tunekit.config.paths import get_path
from tunekit.config.space import SearchSpace
from tunekit.report.advice import CONFIG_FAILURES, advise


def _state(trial) -> str:
    return trial.state.name


def outcome(trial) -> dict[str, Any]:
    """What a trial recorded about how it ended (duration_s, best_epoch, epochs_run, metrics,
    pruned_at_epoch, error): one `result` attribute, or separate ones in studies written by earlier tunekit versions."""
    attrs = trial.user_attrs
    return {**attrs, **(attrs.get("result") or {})}


def params_of(trial, space: SearchSpace | None = None) -> dict[str, Any]:
    """A trial's params with the types the YAML gave them. Optuna categoricals hold only scalars, so a
    list choice (`model.hidden: [256, 256]`) is stored as its JSON text; the study's search block
    (`space`, from its base config) or, in a study from before derived configs, the trial's stored
    config holds the value itself, which replaces the text when the two agree."""
    config = trial.user_attrs.get("config")
    if space is not None and not isinstance(config, dict):
        return space.values_from(trial.params)
    out = {}
    for key, value in trial.params.items():
        if isinstance(value, str) and isinstance(config, dict):
            typed = get_path(config, key)
            if isinstance(typed, (list, dict)) and json.dumps(typed) == value:
                value = typed
        out[key] = value
    return out


def best_so_far(values: list[float], maximize: bool) -> list[float]:
    """The best value after each completed trial, in trial order: the study's progress, as numbers."""
    out: list[float] = []
    for v in values:
        out.append(v if not out or (v > out[-1] if maximize else v < out[-1]) else out[-1])
    return out


def trial_row(trial, space: SearchSpace | None = None) -> dict[str, Any]:
    ended = outcome(trial)
    return {
        "number": trial.number,
        "state": _state(trial),
        "value": trial.value if trial.values is not None and len(trial.values) == 1 else trial.values,
        "params": params_of(trial, space),
        "reason": ended.get("reason"),
        # A trial closed without a result (interrupted, worker_died) has only Optuna's timestamps.
        "duration_s": ended.get("duration_s")
        if ended.get("duration_s") is not None
        else (round(trial.duration.total_seconds(), 3) if trial.duration else None),
        "best_epoch": ended.get("best_epoch"),
        # COMPLETE, but stopped before its last epoch (by --timeout): its value is its best epoch so far.
        "cut_short": ended.get("cut_short"),
    }


def _optuna_importance():
    """`optuna.importance`, imported without scikit-learn.

    Importing it imports scikit-learn's ensembles (for fANOVA, which tunekit does not use) whenever
    scikit-learn is installed, as it is for the bundled datasets: ~1.5 s added to every search's end
    and every `tunekit report`. With `sklearn` marked missing for that one import, Optuna's lazy
    `try_import` records fANOVA as unavailable and PED-ANOVA, pure numpy, is unaffected."""
    if "optuna.importance" in sys.modules or "sklearn" in sys.modules:
        import optuna.importance

        return optuna.importance
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn...` now raises ImportError at once
    try:
        import optuna.importance
    finally:
        del sys.modules["sklearn"]
    return optuna.importance


def _scored_trials(study) -> list:
    """The trials importance is computed on: the completed ones, plus those that failed for a reason
    of their config (diverged, vanishing gradients, out of memory), given the worst completed value
    of the first objective. A parameter that decides whether trials fail then comes out important;
    on completed trials alone it would look constant (every survivor has the same value) and
    "barely matter". Pruned trials and trials cut off by a signal, a lost worker or --timeout say
    nothing about their config and stay out."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.FAIL and t.params and outcome(t).get("reason") in CONFIG_FAILURES
    ]
    if not failed or not complete:
        return complete
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    firsts = [t.values[0] for t in complete]
    worst = min(firsts) if maximize else max(firsts)
    return complete + [
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            values=[worst] * len(study.directions),
            params=t.params,
            distributions=t.distributions,
        )
        for t in failed
    ]


def importance(study) -> dict[str, float]:
    """Each parameter's share of the metric's variance (Optuna's PED-ANOVA); {} when too few trials.
    Computed on `_scored_trials`: config failures count as the worst completed value."""

    scored = _scored_trials(study)
    if len(scored) < 3 or not any(t.params for t in scored):
        return {}
    try:
        target = None
        several = len(study.directions) > 1
        if several or len(scored) > len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))):
            # A copy of the study holding exactly the scored trials (optuna.importance reads a study).
            level = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory"
            try:
                copy = optuna.create_study(directions=study.directions)
            finally:
                optuna.logging.set_verbosity(level)
            copy.add_trials(scored)
            study = copy
        if several:
            # Importance for the first objective; PED-ANOVA reads its target as lower-is-better.
            sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
            target = lambda t: sign * t.values[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # its "low target" reminder: handled by the sign above
            return {k: float(v) for k, v in _optuna_importance().get_param_importances(study, target=target).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}  # e.g. every completed trial has the same params


def pick_best(study):
    """The best trial; with several objectives, the Pareto-front member best in the first
    objective (ties broken by the next), a rule stated in the report. None before any completes."""

    if len(study.directions) == 1:
        try:
            return study.best_trial
        except ValueError:
            return None
    front = study.best_trials
    if not front:
        return None
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]
    return max(front, key=lambda t: tuple(s * v for s, v in zip(signs, t.values)))


def ranked_trials(study) -> list:
    """Completed trials, best first (several objectives: by the first, then the next)."""
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(done, key=lambda t: tuple(-s * v for s, v in zip(signs, t.values)))


def summarize(study, storage: str) -> dict[str, Any]:
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    states = Counter(_state(t) for t in trials)
    reasons = Counter(t.user_attrs.get("reason") for t in trials if t.state == optuna.trial.TrialState.FAIL)
    base = any_base(attrs)
    space = space_of(base) if base is not None else None
    best = None
    bt = pick_best(study)
    if bt is not None:
        best = {
            "number": bt.number,
            "value": bt.value if len(bt.values) == 1 else list(bt.values),
            "params": params_of(bt, space),
            "config": trial_config(attrs, bt),
            "metrics": outcome(bt).get("metrics"),
            "best_epoch": outcome(bt).get("best_epoch"),
        }
    several = len(study.directions) > 1
    extra = {}
    if several:
        extra = {
            "objectives": attrs.get("tunekit.objectives"),
            "pareto": sorted(t.number for t in study.best_trials),
            "best_rule": "the Pareto-front member best in the first objective",
            "pruning": "off: Optuna cannot prune a study with several objectives",
        }
    summary = {
        "study": study.study_name,
        "storage": storage,
        "metric": attrs.get("tunekit.metric"),
        **extra,
        "direction": [d.name.lower() for d in study.directions] if several else study.direction.name.lower(),
        "n_trials": len(trials),
        "states": {s: states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        "reasons": dict(reasons.most_common()),
        "best": best,
        "trials": [trial_row(t, space) for t in trials],
        "importance": importance(study),
    }
    summary["advice"] = advise(summary, attrs.get("tunekit.space") or {})
    values = [
        t["value"] if not isinstance(t["value"], list) else t["value"][0]
        for t in summary["trials"]
        if t["state"] == "COMPLETE"
    ]
    first_direction = summary["direction"][0] if several else summary["direction"]
    summary["history"] = best_so_far(values, first_direction == "maximize")
    return summary


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
