"""One trial: sample its values, write its concrete config, build, train, and say how it ended.

The trainer knows nothing of Optuna; this is where the two meet. The epoch callback appends to the
trial's metrics.jsonl, reports to the pruner, honours --timeout and the test fault switch. Outcomes
are ("COMPLETE", value), ("PRUNED", None) or ("FAIL", reason); KeyboardInterrupt propagates.
"""

from __future__ import annotations

import errno
import gc
import math
import os
import time
import traceback
from typing import TYPE_CHECKING, Any

import torch

from tunekit import reasons
from tunekit.config.derive import CONFIG_FROM, base_key, derive, dropped_keys
from tunekit.config.paths import apply_params
from tunekit.config.sections import Config, check_sections
from tunekit.config.space import SearchSpace
from tunekit.config.yaml_io import dump_yaml
from tunekit.runs import StudyDir, append_jsonl, write_text
from tunekit.study import faults
from tunekit.study.liveness import raise_if_storage_lost
from tunekit.study.options import TimedOut
from tunekit.study.storage import storage_lost
from tunekit.track.tracking import trial_key
from tunekit.train.build import build_run, resolve_device
from tunekit.train.trainer import Diverged, fit

if TYPE_CHECKING:
    from tunekit.study.options import SearchOptions


class _Pruned(Exception):
    pass


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's seed follows from the study seed and its number, whichever worker runs it."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


def objectives_of(config: Config) -> list[tuple[str, str]]:
    """(metric, direction) per objective: one for an ordinary study, several for a Pareto study."""
    if config.study.objectives:
        return [(o.metric, o.direction) for o in config.study.objectives]
    return [(config.study.metric, config.study.direction)]


class TrialJob:
    """One trial from sampled values to outcome, in steps, so that a trial can be trained alone
    (`run_trial`) or as a member of a population (tunekit.study.grouping) and end the same way.

    Constructing it samples the trial's values and writes its concrete config; `build` makes its
    Run; `on_epoch` is its epoch callback; `conclude` turns a FitResult or the exception that ended
    training into the outcome, recording why in the trial's attributes."""

    def __init__(
        self,
        trial,
        config: Config,
        space: SearchSpace,
        study_dir: StudyDir,
        opts: SearchOptions,
        deadline: float | None,
    ):
        self.trial, self.opts, self.deadline = trial, opts, deadline
        self.started = time.perf_counter()
        values = space.sample(trial)
        raw = apply_params(config.raw, values)
        self.config, problems = check_sections(raw)
        self.raw = raw
        trial_dir = study_dir.trial_dir(trial.number)
        write_text(trial_dir / "config.yaml", dump_yaml(raw))
        self.derived = derivation(trial, config.raw, values, raw)
        # The space was checked at its corners; an interior combination can still be invalid.
        self.problem = "; ".join(p.render(None) for p in problems) if problems else None
        self.seed = trial_seed(config.seed, trial.number)
        self.monitor, self.direction = config.study.metric, config.study.direction
        self.objectives = objectives_of(config)
        self.metrics_path = trial_dir / "metrics.jsonl"
        # Per-epoch values go to the journal only for a pruner to read (each is an fsynced write);
        # the curves themselves are in metrics.jsonl either way.
        self.report = len(self.objectives) == 1 and config.pruner.name != "none"
        self.faults_planned = bool(os.environ.get("TUNEKIT_FAULT"))
        self.epochs_seen = 0
        self.run = None
        self.tracking, self.track_key = opts.tracking, trial_key(trial.number)
        if self.tracking:
            self.tracking.trial_started(self.track_key, trial.number, space.values_from(trial.params))
        opts.emit(kind="start", trial=trial.number, epochs=self.config.train.epochs, worker=opts.worker_index)

    def build(self, split=None):

        self.run = build_run(
            self.config, resolve_device(self.opts.device or self.config.train.device), self.seed, split=split
        )
        return self.run

    def on_epoch(self, record) -> None:
        self.epochs_seen += 1
        trial, opts, monitor = self.trial, self.opts, self.monitor
        append_jsonl(self.metrics_path, record.to_json())
        if self.tracking:
            self.tracking.epoch(self.track_key, record.epoch, record.metrics)
        value = record.metrics.get(monitor)
        opts.emit(kind="epoch", trial=trial.number, epoch=record.epoch, value=value)
        if opts.verbose:
            m = record.metrics
            opts.log(
                f"  trial {trial.number} epoch {record.epoch:>3}  train_loss={m['train_loss']:.4f}  "
                f"{monitor}={m.get(monitor, float('nan')):.4f}  lr={m['lr']:.3g}  grad_norm={m['grad_norm']:.3g}"
            )
        # Optuna cannot prune a study with several objectives (trial.report raises there).
        if self.report and value is not None and math.isfinite(value):
            trial.report(value, record.epoch)
            if trial.should_prune():
                raise _Pruned(record.epoch)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimedOut(record.epoch)  # --timeout bounds the running trial too, at its next epoch
        raise_if_storage_lost()
        if self.faults_planned:
            faults.fire(trial.number, record.epoch, self.run.model)

    def conclude(self, result=None, exc: BaseException | None = None) -> tuple[str, Any]:
        """The outcome of training that returned `result` or raised `exc`. Re-raises what is not the
        trial's own failure: KeyboardInterrupt, and a full disk (the study's problem: stop, don't fail every trial after)."""

        trial, started = self.trial, self.started
        if exc is not None:
            if isinstance(exc, _Pruned):
                trial.set_user_attr(
                    "result",
                    {
                        "duration_s": round(time.perf_counter() - started, 3),
                        "pruned_at_epoch": exc.args[0],
                        **self.derived,
                    },
                )
                return "PRUNED", None
            if isinstance(exc, TimedOut):
                return self.fail(reasons.TIMEOUT, f"--timeout reached at epoch {exc.args[0]}")
            if isinstance(exc, Diverged):
                if exc.record is not None:  # the epoch that went wrong, with why, closes the trial's metrics
                    append_jsonl(self.metrics_path, {**exc.record.to_json(), "stopped": exc.reason})
                    if self.tracking:
                        self.tracking.epoch(self.track_key, exc.record.epoch, exc.record.metrics)
                return self.fail(exc.reason, str(exc))
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or not isinstance(exc, Exception):
                raise exc
            if storage_lost(exc):
                raise exc  # the database went away mid-trial (a report): not the trial's failure
            reason = reasons.OOM if "out of memory" in str(exc).lower() else reasons.ERROR
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if os.environ.get("TUNEKIT_DEBUG"):
                traceback.print_exception(exc)
            return self.fail(reason, detail)

        duration = time.perf_counter() - started
        measured = {
            **result.best,
            "params": float(sum(p.numel() for p in self.run.model.parameters())),
            "train_time": duration,
        }
        values = [measured.get(metric) for metric, _ in self.objectives]
        for (metric, _), value in zip(self.objectives, values):
            if value is None or not math.isfinite(value):
                return self.fail(reasons.NONFINITE_LOSS, f"{metric} is {value}")  # Optuna would COMPLETE +inf
        # One attribute, not four: each is an fsynced journal write (see study.summary.outcome).
        trial.set_user_attr(
            "result",
            {
                "duration_s": round(duration, 3),
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "metrics": {k: float(v) for k, v in result.best.items()},
                **self.derived,
            },
        )
        return "COMPLETE", float(values[0]) if len(values) == 1 else [float(v) for v in values]

    def train_alone(self) -> tuple[str, Any]:

        if self.problem:
            return self.fail(reasons.ERROR, self.problem)
        try:
            self.build()
            result = fit(
                self.run, seed=self.seed, monitor=self.monitor, direction=self.direction, on_epoch=self.on_epoch
            )
        except Exception as exc:
            return self.conclude(exc=exc)
        else:
            return self.conclude(result)
        finally:
            self.release()

    def fail(self, reason: str, detail: str) -> tuple[str, str]:
        return _fail(self.trial, reason, detail, self.started, self.derived)

    def release(self) -> None:
        on_gpu = self.run is not None and self.run.device.type == "cuda"
        self.run = None  # the last reference, so that the collection below frees it
        if on_gpu:
            release_gpu_memory()


def derivation(trial, base: dict, values: dict[str, Any], raw: dict) -> dict:
    """How to derive the trial's concrete config `raw` (tunekit.config.derive): its base's key and the
    arguments a component switch dropped, which go into the trial's `result` (no journal line of
    their own), ~40 bytes instead of a ~800-byte copy. Should a derivation ever differ from what
    is trained, the copy is stored instead, so a derived config is always the trained one."""
    drop = dropped_keys(base, values, raw)
    if derive(base, values, drop) != raw:
        trial.set_user_attr("config", raw)
        return {}
    return {CONFIG_FROM: {"base": base_key(base), **({"drop": drop} if drop else {})}}


def run_trial(
    trial, config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions, deadline: float | None
) -> tuple[str, Any]:
    """Train one trial alone. Returns (state name, value or reason). KeyboardInterrupt propagates."""
    return TrialJob(trial, config, space, study_dir, opts, deadline).train_alone()


def release_gpu_memory() -> None:
    """Give GPU memory back between trials; otherwise it piles up across in-process trials."""

    gc.collect()
    torch.cuda.empty_cache()


def _fail(trial, reason: str, detail: str, started: float, derived: dict) -> tuple[str, str]:
    trial.set_user_attr("reason", reason)  # its own attribute: recovery and the report filter on it
    trial.set_user_attr(
        "result", {"duration_s": round(time.perf_counter() - started, 3), "error": detail[:500], **derived}
    )
    return "FAIL", reason
