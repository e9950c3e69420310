"""Creating or resuming a study safely: a rerun continues only the study it started.

A study remembers its search space (fingerprint), its base config and, for a data file, the file's
size, modification time and sha256; a rerun whose space, config or data differs is refused with the
difference shown, since Optuna would otherwise mix incompatible trials silently. One change is
allowed: a float or int range that only widened (lower low, higher high) continues the study,
with a note, since every earlier trial lies inside the new range. `--fresh` archives
the old study instead of deleting it; `--allow-data-change` continues on a changed data file.
"""

from __future__ import annotations

import datetime
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from tunekit.components.data import FILE_DATASETS, fingerprint, shown_path
from tunekit.components.samplers import POINT, build_sampler_and_pruner, space_is_finite
from tunekit.config.derive import base_attr
from tunekit.config.sections import Config
from tunekit.config.space import SearchSpace, point_key
from tunekit.errors import StateError
from tunekit.report.summary import ranked_trials
from tunekit.runs import StudyDir
from tunekit.study import faults
from tunekit.study.storage import load_study, open_storage
from tunekit.study.trial import objectives_of
from tunekit.version import __version__

if TYPE_CHECKING:
    from tunekit.study.options import SearchOptions

# Keys whose change between runs does not change what a trial means.
# How trials are run, not what they are: a rerun may change these and still resume the study.
# `data.path` is absolute (tunekit.config.load) and differs between machines sharing a database, or
# after a project folder moves: the data file is compared by its content instead (_check_data).
_FREE_TO_CHANGE = {
    "name",
    "study.trials",
    "study.population",
    "study.population_ramp",
    "study.max_retries",
    "study.heartbeat",
    "train.device",
    "train.threads",
    "data.path",
    "tracking",  # where a study is tracked is no part of what it searches
}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def _differences(old: dict, new: dict, skip: set[str] = frozenset()) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key in skip or any(key.startswith(s + ".") for s in skip):
            continue
        if key not in b:
            lines.append(f"- {key}: {json.dumps(a[key])}")
        elif key not in a:
            lines.append(f"+ {key}: {json.dumps(b[key])}")
        elif a[key] != b[key]:
            lines.append(f"~ {key}: {json.dumps(a[key])} -> {json.dumps(b[key])}")
    return lines


def _range(f: dict) -> str:
    return (
        f"[{f['low']}, {f['high']}]"
        + (" log" if f.get("log") else "")
        + (f" step {f['step']}" if f.get("step") else "")
    )


def _widening(old: dict, new: dict) -> str | None:
    """`[0.001, 0.1] -> [0.001, 0.5]` when `new` is `old` with a lower low and/or a higher high, and
    nothing else changed; else None. Every earlier trial's value stays inside the range (on its
    step grid too), and Optuna accepts a float or int distribution whose bounds moved, so the study
    continues. Anything else (narrower, another log, step, kind, condition, choices) is refused."""
    if old == new or old.get("kind") not in ("float", "int"):
        return None
    same = ("kind", "log", "step", "choices", "when")
    if any(old.get(k) != new.get(k) for k in same) or None in (
        old.get("low"),
        old.get("high"),
        new.get("low"),
        new.get("high"),
    ):
        return None
    if not (new["low"] <= old["low"] and new["high"] >= old["high"]):
        return None
    step = old.get("step")
    if step:  # the old points must stay on the new grid, which starts at the new low
        shift = (old["low"] - new["low"]) / step
        if abs(shift - round(shift)) > 1e-9:
            return None
    return f"{_range(old)} -> {_range(new)}"


def _added_choices(old: dict | None, new: dict | None) -> bool:
    if not old or not new or old.get("kind") != "categorical" or new.get("kind") != "categorical":
        return False
    return old.get("choices") != new.get("choices") and all(c in new.get("choices", []) for c in old.get("choices", []))


def archive(study_dir: StudyDir) -> Path | None:
    """`--fresh`: move the old study aside (never delete a user's results)."""
    if not study_dir.path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    archive = study_dir.sub("archive", stamp)  # a planted archive/ link would move the study out
    archive.mkdir(parents=True)
    for child in list(study_dir.path.iterdir()):
        if child.name != "archive":
            shutil.move(str(child), archive / child.name)
    return archive


def open_or_resume(config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions):

    storage = open_storage(study_dir, opts.storage, opts.repair, opts.log)
    sampler, pruner = build_sampler_and_pruner(config, space)
    objectives = objectives_of(config)
    study = optuna.create_study(
        study_name=study_dir.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=[d for _, d in objectives],
        load_if_exists=True,
    )
    faults.fire_at("create")
    base = {k: v for k, v in config.raw.items() if k != "search"}
    old_space = study.user_attrs.get("tunekit.space")
    if old_space is not None:
        new_space = space.fingerprint()
        widened = {k: _widening(old_space[k], new_space[k]) for k in old_space if k in new_space}
        widened = {k: w for k, w in widened.items() if w}
        changed = _differences(
            {k: v for k, v in old_space.items() if k not in widened},
            {k: v for k, v in new_space.items() if k not in widened},
        )
        if changed:
            hint = "rerun with --fresh to start a new study (the old one is archived), or --study NEW_NAME"
            if any(_added_choices(old_space.get(k), new_space.get(k)) for k in old_space):
                hint = (
                    "Optuna cannot add choices to a parameter an existing study has sampled (only a range "
                    "may widen); " + hint
                )
            raise StateError(
                "the search space differs from the one this study was run with:\n  " + "\n  ".join(changed), hint
            )
        changed = _differences(study.user_attrs.get("tunekit.base", {}), base, _FREE_TO_CHANGE)
        if changed:
            raise StateError(
                "the config differs from the one this study was run with:\n  " + "\n  ".join(changed),
                "rerun with --fresh to start a new study (the old one is archived), or --study NEW_NAME",
            )
        if [d.name.lower() for d in study.directions] != [d for _, d in objectives]:
            raise StateError(
                f"this study was run with directions {[d.name.lower() for d in study.directions]}",
                "use --fresh or another --study",
            )
        _check_data(study, config, opts)
        if widened:
            # Earlier trials stay in the study, inside the wider range; the sampler draws from the new one.
            study.set_user_attr("tunekit.space", new_space)
            opts.log(
                "note: the search space widened, continuing the study: "
                + "; ".join(f"search.{k} {w}" for k, w in widened.items())
            )
    else:
        # The space fingerprint goes last: a second process that sees it can rely on the rest.
        study.set_user_attr("tunekit.base", base)
        study.set_user_attr("tunekit.metric", config.study.metric)
        study.set_user_attr("tunekit.objectives", [{"metric": m, "direction": d} for m, d in objectives])
        with warnings.catch_warnings():  # experimental in Optuna; optuna-dashboard shows these, not "Objective 0"
            warnings.simplefilter("ignore")
            study.set_metric_names([m for m, _ in objectives])

        data = data_fingerprint(config)
        if data is not None:
            study.set_user_attr("tunekit.data", data)
        study.set_user_attr("tunekit.version", __version__)
        study.set_user_attr("tunekit.space", space.fingerprint())
    # The config this run's trials derive theirs from (tunekit.config.derive), once per version:
    # a rerun that changed a key free to change, or widened a range, adds its own.
    key, raw = base_attr(config.raw)
    if key not in study.user_attrs:
        study.set_user_attr(key, raw)
    if not study.get_trials(deepcopy=False):
        queue_baseline(study, space, config, opts)
        if opts.warm_start:
            queue_warm_start(study, space, config, study_dir, opts)
    elif opts.warm_start:
        opts.log(f"note: --warm-start {opts.warm_start} ignored: study '{study_dir.name}' already has trials")
    return study


WARM_START_TRIALS = 5


def queue_warm_start(study, space: SearchSpace, config: Config, study_dir: StudyDir, opts: SearchOptions) -> None:
    """A new study's first trials after the baseline: the best completed trials of another study,
    run again here (their values came from another config, so they are re-measured, not copied).
    Only parameter sets this space holds are queued; the rest are named in a note."""
    source_dir = StudyDir(study_dir.runs, opts.warm_start)
    source = load_study(source_dir, None)  # checked to exist before the study was created (search.prepare_study)
    baseline = space.baseline(config.raw)
    ranked = [t for t in ranked_trials(source) if t.state == optuna.trial.TrialState.COMPLETE]
    queued, skipped = [], 0
    for trial in ranked:
        if len(queued) == WARM_START_TRIALS:
            break
        if trial.params == baseline:
            continue  # the new study's own baseline runs these values already
        if space.holds(trial.params):
            study.enqueue_trial(dict(trial.params), user_attrs={"warm_start": f"{source_dir.name}#{trial.number}"})
            queued.append(trial.number)
        else:
            skipped += 1
    opts.log(
        f"warm start: queued {len(queued)} best trial(s) of '{source_dir.name}' "
        f"({', '.join(f'#{n}' for n in queued) or 'none'})"
        + (f"; {skipped} did not fit this search space" if skipped else "")
    )


def queue_baseline(study, space: SearchSpace, config: Config, opts: SearchOptions) -> None:
    """Trial 0: the config as written. A grid or brute force walks only its own points: there the
    baseline runs as the point it is (and counts as that point), or not at all, with a note."""
    baseline = space.baseline(config.raw)
    attrs = {"baseline": True}
    if space_is_finite(study.sampler):
        key = point_key(baseline)
        if key not in {point_key(p) for p in study.sampler.points}:
            off = [p.key for p in space if p.key not in baseline and space.is_active(p, baseline)]
            opts.log(
                f"note: the base config is not a point of the {config.sampler.name} "
                f"({', '.join(off) or 'its values'}: not among the searched values), so it is not run; "
                "add its values to the search to include it"
            )
            return
        attrs[POINT] = key
    study.enqueue_trial(baseline, user_attrs=attrs)


def data_fingerprint(config: Config, known: dict | None = None) -> dict | None:
    """The fingerprint of the config's data file; None for bundled, synthetic and plugin data."""
    if config.data.name not in FILE_DATASETS:
        return None
    return fingerprint(config.data.args["path"], known)


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def data_changes(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints of the data, in words; empty when the content is the same."""
    if old.get("sha256") == new["sha256"]:
        return []  # touched, copied or moved, same bytes: the same data
    changes = []
    if old.get("path") != new["path"]:
        changes.append(f"path {old.get('path')} -> {new['path']}")
    if old.get("size") != new["size"]:
        changes.append(f"size {old.get('size')} -> {new['size']} bytes")
    if old.get("mtime_ns") != new["mtime_ns"] and isinstance(old.get("mtime_ns"), int):
        changes.append(f"modified {_when(old['mtime_ns'])} -> {_when(new['mtime_ns'])}")
    changes.append(f"content sha256 {str(old.get('sha256'))[:12]} -> {new['sha256'][:12]}")
    return changes


def _check_data(study, config: Config, opts: SearchOptions) -> None:
    """Refuse to continue on a data file whose content differs from the one the study recorded."""
    recorded = study.user_attrs.get("tunekit.data")
    current = data_fingerprint(config, recorded)
    if current is None:
        return
    if recorded is None:  # a study from before fingerprints: start recording now
        study.set_user_attr("tunekit.data", current)
        return
    changes = data_changes(recorded, current)
    if changes and not opts.allow_data_change:
        raise StateError(
            f"the data file {shown_path(current['path'])} changed since this study recorded it: " + ", ".join(changes),
            "trials on other data do not compare; rerun with --allow-data-change to continue on the new data, "
            "or --fresh to start a new study (the old one is archived)",
        )
    if changes:
        opts.log(
            f"note: the data file {shown_path(current['path'])} changed ({', '.join(changes)}); "
            "continuing as --allow-data-change asks, with the new fingerprint recorded"
        )
        study.set_user_attr("tunekit.data", current)
    elif current["path"] == recorded.get("path") and current != recorded:
        study.set_user_attr("tunekit.data", current)  # same bytes, new mtime: skip the hashing next time
