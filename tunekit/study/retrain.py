"""`tunekit train`: train one concrete config to the end, test it, and save the model.

`train --best` retrains the best trial of a study with that trial's own seed, so the result
reproduces what the search saw, then evaluates the held-out test split once.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from tunekit.config.derive import trial_config
from tunekit.config.load import validate_document
from tunekit.config.sections import Config
from tunekit.config.yaml_io import dump_yaml, parse_yaml
from tunekit.errors import StateError
from tunekit.predict.checkpoint import save_checkpoint
from tunekit.report.summary import pick_best
from tunekit.runs import StudyDir, no_links, open_lock, write_json, write_text
from tunekit.study.best import refresh_best
from tunekit.study.storage import load_study
from tunekit.track.specs import TrackSpec, from_section, merged
from tunekit.track.tracking import Tracking, check_installed, flat_config
from tunekit.train.build import build_run, check_buildable, resolve_device, set_threads
from tunekit.train.trainer import Diagnostics, Diverged, evaluate, fit


@contextlib.contextmanager
def exclusive(lock_path: Path):
    """Serialize writers of one output folder (two `train --best` at once wait for each other)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock(lock_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def train_config(
    config: Config,
    out_dir: Path,
    *,
    seed: int,
    epochs: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] = lambda line: None,
    shuffle_seed: int | None = None,
    diagnostics: bool = True,
    tracking: Tracking | None = None,
    track_as: tuple[str, int | None] = ("train", None),
) -> dict[str, Any]:
    """Train, restore the best epoch, test once, and write model.pt, metrics.json, history.jsonl.
    `shuffle_seed` orders the batches (default: `seed`), as a trial trained in a population had them.
    `tracking`: trackers that get the run as `track_as` (key, trial number): params, epochs, the
    outcome with the val/test metrics, and model.pt as the run's model.

    A run a diagnostic stops is an outcome: history.jsonl holds the epochs that ran, metrics.json
    and the result carry `stopped` and the best validation metrics before it; nothing is tested
    and model.pt is not written (a previous one stays). `diagnostics=False` trains through the
    gradient rules; a non-finite loss still stops the run."""

    config = check_buildable(config)
    started = time.perf_counter()
    run = build_run(config, resolve_device(device or config.train.device), seed)
    set_threads(config.train.threads, run)
    monitor, direction = config.study.metric, config.study.direction
    key, number = track_as
    params = flat_config(config.raw)
    if tracking:
        tracking.trial_started(key, number, params)

    def on_epoch(record) -> None:
        if tracking:
            tracking.epoch(key, record.epoch, record.metrics)
        m = record.metrics
        log(
            f"epoch {record.epoch:>3}  train_loss={m['train_loss']:.4f}  {monitor}={m.get(monitor, float('nan')):.4f}  lr={m['lr']:.3g}"
        )

    stopped = None
    try:
        result = fit(
            run,
            seed=seed,
            monitor=monitor,
            direction=direction,
            on_epoch=on_epoch,
            epochs=epochs,
            shuffle_seed=shuffle_seed,
            diagnostics=Diagnostics(enabled=diagnostics),
        )
    except Diverged as exc:
        result = exc.partial
        stopped = {"reason": exc.reason, "epoch": exc.epoch, "detail": exc.detail}
        log(f"stopped at epoch {exc.epoch}: {exc.reason} ({exc.detail})")
    metrics = {k: v for k, v in result.best.items() if k.startswith("val_")}
    if stopped is None:
        metrics.update(evaluate(run, run.split.X_test, run.split.y_test, "test"))
    with exclusive(out_dir / ".lock"):
        if stopped is None:
            save_checkpoint(out_dir / "model.pt", run.model, config, run.split, metrics)
        history = []
        for record in result.history:
            line = record.to_json()
            if stopped is not None and record.epoch == stopped["epoch"]:
                line["stopped"] = stopped["reason"]  # as a trial's metrics.jsonl ends
            history.append(json.dumps(line) + "\n")
        write_text(out_dir / "history.jsonl", "".join(history))
        summary = {
            "config": config.raw,
            "device": str(run.device),
            "epochs": len(result.history),
            "best_epoch": result.best_epoch or None,
            "metrics": _finite(metrics),
            "checkpoint": str(out_dir / "model.pt") if stopped is None else None,
            "history": str(out_dir / "history.jsonl"),
            "duration_s": round(time.perf_counter() - started, 3),
            **({"stopped": stopped} if stopped else {}),
        }
        write_json(out_dir / "metrics.json", summary)
    if tracking:
        if stopped is None:
            tracking.best_model(key, out_dir / "model.pt", number)
        state, reason = ("COMPLETE", None) if stopped is None else ("STOPPED", stopped["reason"])
        tracking.trial_ended(key, state, reason, {f"final.{k}": v for k, v in metrics.items()}, params)
    return summary


@contextlib.contextmanager
def train_tracking(config: Config, flags: list[TrackSpec], study_dir: StudyDir, nested: bool):
    """The trackers a `train` writes to (the config's tracking: plus --track), on the study's experiment;
    `nested`: under the study's parent run (train --best). None when nothing is tracked."""
    specs = merged(from_section(config.tracking), flags)
    if not specs:
        yield None
        return
    check_installed(specs)

    def warn(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    tracking = Tracking.open(specs, {"tensorboard": study_dir.sub("tensorboard")}, warn)
    tracking.study_started(study_dir.name, [(config.study.metric, config.study.direction)], nested=nested, owner=False)
    try:
        yield tracking
    except BaseException:
        tracking.close(interrupted=True)
        raise
    tracking.close()


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    # JSON has no NaN: a metric that went non-finite is null.
    return {k: float(v) if math.isfinite(v) else None for k, v in metrics.items()}


def train_seeds(
    config: Config,
    out_dir: Path,
    *,
    first_seed: int,
    seeds: int,
    epochs: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] = lambda line: None,
    first_shuffle_seed: int | None = None,
    diagnostics: bool = True,
    tracking: Tracking | None = None,
    track_as: tuple[str, int | None] = ("train", None),
) -> dict[str, Any]:
    """Train once per seed: the first run fills `out_dir` (its checkpoint is the one kept), the others
    `out_dir/seeds/<seed>/`. Every seed trains, whether or not another was stopped by a diagnostic.

    With several seeds the result is the first seed's, plus `seeds` (every seed's own result, with
    its seed) and `seed_stats` (each metric's mean, std and values over the seeds that completed,
    and how many seeds stopped, by reason), which says how much of a difference is luck."""

    runs = []
    for i in range(seeds):
        seed = first_seed + i
        if seeds > 1:
            log(f"seed {seed} ({i + 1}/{seeds})")
        one = train_config(
            config,
            out_dir if i == 0 else no_links(out_dir / "seeds" / str(seed), out_dir),
            seed=seed,
            epochs=epochs,
            device=device,
            log=log,
            shuffle_seed=first_shuffle_seed if i == 0 else None,
            diagnostics=diagnostics,
            tracking=tracking,
            track_as=track_as if i == 0 else (f"{track_as[0]}-seed-{seed}", track_as[1]),
        )
        runs.append({"seed": seed, **one})
    result = dict(runs[0])
    del result["seed"]
    if seeds > 1:
        result["seeds"] = [{k: v for k, v in r.items() if k != "config"} for r in runs]
        result["seed_stats"] = seed_stats(runs)
        write_json(out_dir / "seeds.json", {"seeds": result["seeds"], "seed_stats": result["seed_stats"]})
    return result


def seed_stats(runs: list[dict]) -> dict[str, Any]:
    """Mean and std of each metric over the seeds that completed; the stopped ones counted by reason."""
    completed = [r for r in runs if "stopped" not in r]
    names = sorted({k for r in completed for k, v in r["metrics"].items() if v is not None})
    metrics = {}
    for name in names:
        values = [r["metrics"][name] for r in completed if r["metrics"].get(name) is not None]
        metrics[name] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values,
        }
    by_reason = collections.Counter(r["stopped"]["reason"] for r in runs if "stopped" in r)
    return {
        "seeds": [r["seed"] for r in runs],
        "completed": len(completed),
        "stopped": {"count": sum(by_reason.values()), "reasons": dict(by_reason)},
        "metrics": metrics,
    }


def variant_label(pick: int | None, epochs: int | None, overrides: list[str] | None) -> str | None:
    """The folder name under runs/<study>/train/ for a `train --best` that is not the study's winner as
    searched (`pick-9`, `best-epochs-40`, `best-set-optimizer.lr-3e-4`), or None: that run owns best/."""
    if pick is None and epochs is None and not overrides:
        return None
    parts = [f"pick-{pick}" if pick is not None else "best"]
    if epochs is not None:
        parts.append(f"epochs-{epochs}")
    if overrides:
        joined = "_".join(overrides)
        text = re.sub(r"[^A-Za-z0-9._]+", "-", joined).strip("-.")
        digest = hashlib.sha256("\0".join(overrides).encode()).hexdigest()[:8]
        if len(text) > 40:  # long overrides: a readable start and a digest that keeps them apart
            text = text[:31].rstrip("-.") + "-" + digest
        elif text != joined.replace("=", "-"):  # `a/b` and `a-b` would share a folder: the digest parts them
            text = f"{text}-{digest}"
        parts.append(f"set-{text}")
    return "-".join(parts)


def best_config(
    study_dir: StudyDir, storage_url: str | None = None, pick: int | None = None
) -> tuple[Config, int, int | None]:
    """The best trial's config, number and batch-order seed (set when it trained in a population, else
    None), taken from the study storage: best.yaml is only a derived copy (another machine may have
    found a better trial since it was written, or someone edited it), rewritten here when stale.
    `pick` takes another completed trial instead (a Pareto front member, say)."""

    study = load_study(study_dir, storage_url)
    if pick is not None:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        if pick not in trials or trials[pick].state != optuna.trial.TrialState.COMPLETE:
            raise StateError(
                f"--pick {pick}: study '{study_dir.name}' has no completed trial #{pick}",
                "see `tunekit report` for trial numbers",
            )
        chosen = trials[pick]
    else:
        chosen = pick_best(study)
        if chosen is None:
            raise StateError(
                f"study '{study_dir.name}' has no completed trial yet: nothing to train",
                "run `tunekit search` until a trial completes",
            )
        refresh_best(study, study_dir)
    raw = trial_config(study.user_attrs, chosen)
    if raw is None:
        raise StateError(
            f"trial #{chosen.number} of study '{study_dir.name}' records no config to train "
            "(its study's base config is missing from the storage)",
            "rerun `tunekit search` on the study's config, or train a config file with `tunekit train CONFIG`",
        )
    config = validate_document(parse_yaml(dump_yaml(raw), f"trial #{chosen.number} of study '{study_dir.name}'"))
    return config, chosen.number, chosen.user_attrs.get("shuffle_seed")
