"""One trial: sample its values, write its concrete config, build, train, and say how it ended.

The trainer knows nothing of Optuna; this is where the two meet. The epoch callback appends to the
trial's metrics.jsonl, reports to the pruner, honours --timeout and the test fault switch. Outcomes
are ("COMPLETE", value), ("PRUNED", None) or ("FAIL", reason); KeyboardInterrupt propagates.
"""

from __future__ import annotations

import errno
import math
import os
import time
import traceback
from typing import TYPE_CHECKING, Any

from tunekit.config.load import apply_params
from tunekit.config.sections import Config, check_sections
from tunekit.config.yaml_io import dump_yaml
from tunekit.runs import StudyDir, append_jsonl, write_text
from tunekit.space import SearchSpace
from tunekit.study import faults

if TYPE_CHECKING:
    from tunekit.study.search import SearchOptions


class _Pruned(Exception):
    pass


class _TimedOut(Exception):
    pass


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's seed follows from the study seed and its number, whichever worker runs it."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


def objectives_of(config: Config) -> list[tuple[str, str]]:
    """(metric, direction) per objective: one for an ordinary study, several for a Pareto study."""
    if config.study.objectives:
        return [(o.metric, o.direction) for o in config.study.objectives]
    return [(config.study.metric, config.study.direction)]


def run_trial(trial, config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions,
               deadline: float | None) -> tuple[str, Any]:
    """Train one trial. Returns (state name, value or reason). KeyboardInterrupt propagates."""
    from tunekit.build import build_run, resolve_device
    from tunekit.trainer import Diverged, fit

    started = time.perf_counter()
    values = space.sample(trial)
    raw = apply_params(config.raw, values)
    trial_config, problems = check_sections(raw)
    trial_dir = study_dir.trial_dir(trial.number)
    write_text(trial_dir / "config.yaml", dump_yaml(raw))
    trial.set_user_attr("config", raw)
    if problems:  # the space was checked at its corners; an interior combination can still be invalid
        return _fail(trial, "error", "; ".join(p.render(None) for p in problems), started)

    seed = trial_seed(config.seed, trial.number)
    monitor, direction = config.study.metric, config.study.direction
    objectives = objectives_of(config)
    metrics_path = trial_dir / "metrics.jsonl"
    # Per-epoch values go to the journal only for a pruner to read (each is an fsynced write);
    # the curves themselves are in metrics.jsonl either way.
    report = len(objectives) == 1 and config.pruner.name != "none"

    def on_epoch(record) -> None:
        append_jsonl(metrics_path, record.to_json())
        value = record.metrics.get(monitor)
        if opts.verbose:
            m = record.metrics
            opts.log(f"  trial {trial.number} epoch {record.epoch:>3}  train_loss={m['train_loss']:.4f}  "
                     f"{monitor}={m.get(monitor, float('nan')):.4f}  lr={m['lr']:.3g}  grad_norm={m['grad_norm']:.3g}")
        # Optuna cannot prune a study with several objectives (trial.report raises there).
        if report and value is not None and math.isfinite(value):
            trial.report(value, record.epoch)
            if trial.should_prune():
                raise _Pruned(record.epoch)
        if deadline is not None and time.monotonic() > deadline:
            raise _TimedOut(record.epoch)  # --timeout bounds the running trial too, at its next epoch
        if faults_planned:
            faults.fire(trial.number, record.epoch, run.model)

    faults_planned = bool(os.environ.get("TUNEKIT_FAULT"))
    run = None
    try:
        device = resolve_device(opts.device or trial_config.train.device)
        run = build_run(trial_config, device, seed)
        result = fit(run, seed=seed, monitor=monitor, direction=direction, on_epoch=on_epoch)
    except _Pruned as pruned:
        trial.set_user_attr("duration_s", round(time.perf_counter() - started, 3))
        trial.set_user_attr("pruned_at_epoch", pruned.args[0])
        return "PRUNED", None
    except _TimedOut as stopped:
        return _fail(trial, "timeout", f"--timeout reached at epoch {stopped.args[0]}", started)
    except Diverged as exc:
        if exc.record is not None:  # the epoch that went wrong, with why, closes the trial's metrics
            append_jsonl(metrics_path, {**exc.record.to_json(), "stopped": exc.reason})
        return _fail(trial, exc.reason, str(exc), started)
    except KeyboardInterrupt:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise  # a full disk is the study's problem, not this trial's: stop, don't fail every trial after
        return _fail(trial, "error", f"{type(exc).__name__}: {exc}", started)
    except Exception as exc:
        reason = "oom" if "out of memory" in str(exc).lower() else "error"
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if os.environ.get("TUNEKIT_DEBUG"):
            traceback.print_exc()
        return _fail(trial, reason, detail, started)
    finally:
        _release(run)

    duration = time.perf_counter() - started
    measured = {**result.best, "params": float(sum(p.numel() for p in run.model.parameters())), "train_time": duration}
    values = [measured.get(metric) for metric, _ in objectives]
    for (metric, _), value in zip(objectives, values):
        if value is None or not math.isfinite(value):
            return _fail(trial, "nonfinite_loss", f"{metric} is {value}", started)  # Optuna would COMPLETE +inf
    trial.set_user_attr("duration_s", round(duration, 3))
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("epochs_run", len(result.history))
    trial.set_user_attr("metrics", {k: float(v) for k, v in result.best.items()})
    return "COMPLETE", float(values[0]) if len(values) == 1 else [float(v) for v in values]


def _release(run) -> None:
    """Give GPU memory back between trials; otherwise it piles up across in-process trials."""
    if run is None or run.device.type != "cuda":
        return
    import gc

    import torch

    del run
    gc.collect()
    torch.cuda.empty_cache()


def _fail(trial, reason: str, detail: str, started: float) -> tuple[str, str]:
    trial.set_user_attr("reason", reason)
    trial.set_user_attr("error", detail[:500])
    trial.set_user_attr("duration_s", round(time.perf_counter() - started, 3))
    return "FAIL", reason
