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
from tunekit.components.metrics import better
from tunekit.config.derive import CONFIG_FROM, base_key, derive, dropped_keys
from tunekit.config.paths import apply_params
from tunekit.config.sections import Config, check_sections
from tunekit.config.space import SearchSpace
from tunekit.config.yaml_io import dump_yaml
from tunekit.runs import StudyDir, append_jsonl, write_text
from tunekit.study import faults
from tunekit.study.alarm import shielded
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
    (`train_alone`) or as a member of a population (tunekit.study.grouping) and end the same way.

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
        self.trial, self.opts, self.deadline, self.study_dir = trial, opts, deadline, study_dir
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
        # The best epoch so far, as the trainer's ledger picks it: what a trial cut short by --timeout is told.
        self.best_epoch, self.best_metrics = 0, None
        self.run, self.n_params = None, float("nan")
        self.tracking, self.track_key = opts.tracking, trial_key(trial.number)
        if self.tracking:
            self.tracking.trial_started(self.track_key, trial.number, space.values_from(trial.params))
        opts.emit(kind="start", trial=trial.number, epochs=self.config.train.epochs, worker=opts.worker_index)

    def build(self, split=None):

        self.run = build_run(
            self.config, resolve_device(self.opts.device or self.config.train.device), self.seed, split=split
        )
        self.n_params = float(sum(p.numel() for p in self.run.model.parameters()))
        if self.faults_planned:
            faults.fire(self.trial.number, "build", self.run.model)
        return self.run

    def on_epoch(self, record) -> None:
        with shielded():  # the --timeout alarm waits until the epoch is recorded and reported
            self._record(record)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimedOut(record.epoch)  # --timeout bounds the running trial too, at its next epoch
        raise_if_storage_lost()
        if self.faults_planned:
            faults.fire(self.trial.number, record.epoch, self.run.model)

    def _record(self, record) -> None:
        self.epochs_seen += 1
        trial, opts, monitor = self.trial, self.opts, self.monitor
        value = record.metrics.get(monitor)
        ranked = record.metrics.get(monitor, record.metrics["train_loss"])  # as the ledger ranks epochs
        if self.best_metrics is None or better(
            ranked, self.best_metrics.get(monitor, self.best_metrics["train_loss"]), self.direction
        ):
            self.best_epoch, self.best_metrics = record.epoch, dict(record.metrics)
        append_jsonl(self.metrics_path, record.to_json())
        if self.tracking:
            self.tracking.epoch(self.track_key, record.epoch, record.metrics)
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

    def conclude(self, result=None, exc: BaseException | None = None) -> tuple[str, Any]:
        """The outcome of training that returned `result` or raised `exc`. Re-raises what is not the
        trial's own failure: KeyboardInterrupt, and a full disk (the study's problem: stop, don't fail every trial after).
        The --timeout alarm does not land here: what is written about the trial is written whole."""
        with shielded():
            return self._conclude(result, exc)

    def _conclude(self, result=None, exc: BaseException | None = None) -> tuple[str, Any]:
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
                return self._timed_out(exc.args[0] if exc.args else "mid-epoch")
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

        return self._complete(result.best, result.best_epoch, len(result.history))

    def _timed_out(self, where) -> tuple[str, Any]:
        """--timeout stopped the trial: with a finished epoch it is told its best epoch's value (marked
        `cut_short`), without one it fails `timeout` and runs again on the next run."""
        if self.best_metrics is None:
            return self.fail(reasons.TIMEOUT, f"--timeout reached at epoch {where}")
        cut = reasons.TIMEOUT if self.epochs_seen < self.config.train.epochs else None  # else it had every epoch
        return self._complete(self.best_metrics, self.best_epoch, self.epochs_seen, cut_short=cut)

    def _complete(self, best: dict, best_epoch: int, epochs_run: int, cut_short: str | None = None) -> tuple[str, Any]:
        trial, started = self.trial, self.started
        duration = time.perf_counter() - started
        measured = {**best, "params": self.n_params, "train_time": duration}
        values = [measured.get(metric) for metric, _ in self.objectives]
        for (metric, _), value in zip(self.objectives, values):
            if value is None or not math.isfinite(value):
                return self.fail(reasons.NONFINITE_LOSS, f"{metric} is {value}")  # Optuna would COMPLETE +inf
        # One attribute, not four: each is an fsynced journal write (see study.summary.outcome).
        trial.set_user_attr(
            "result",
            {
                "duration_s": round(duration, 3),
                "best_epoch": best_epoch,
                "epochs_run": epochs_run,
                "metrics": {k: float(v) for k, v in best.items()},
                **self.derived,
                # Stopped before its last epoch by this (only `timeout`): its value is its best epoch so far.
                **({"cut_short": cut_short} if cut_short else {}),
            },
        )
        return "COMPLETE", float(values[0]) if len(values) == 1 else [float(v) for v in values]

    def train_alone(self, ended=None) -> tuple[str, Any]:
        """Build and train this trial on its own; its outcome goes to `ended(job, state, outcome)` too."""
        if self.problem:
            return self.end(ended, outcome=self.fail(reasons.ERROR, self.problem))
        try:
            self.build()
            result = fit(
                self.run, seed=self.seed, monitor=self.monitor, direction=self.direction, on_epoch=self.on_epoch
            )
        except Exception as exc:
            return self.end(ended, exc=exc)
        else:
            return self.end(ended, result)
        finally:
            self.release()

    def end(self, ended, result=None, exc: BaseException | None = None, outcome=None) -> tuple[str, Any]:
        """Conclude the trial and hand its outcome to `ended` (when given) as one step: the --timeout
        alarm does not land between the two, so a trial is never concluded one way and told another."""
        with shielded():
            outcome = outcome or self.conclude(result, exc)
            if ended is not None:
                ended(self, *outcome)
        return outcome

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
