"""`tunekit search`: run (or resume) an Optuna study whose trials train real models.

Flow per trial: sample params -> concrete trial config -> build -> fit (epoch callback reports to
Optuna and may prune) -> tell the outcome. Every trial's config and metrics land under
runs/<study>/trials/NNNNN/, and best.yaml follows the best completed trial.

Failure policy: a trial that diverges or raises is told FAIL with a reason and the study goes
on. Ctrl-C / SIGTERM fail the running trial with reason `interrupted`, queue its params to be
retried, and propagate so the CLI can exit 130/143 with a resume command.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunekit.config.load import apply_params
from tunekit.config.sections import Config, check_sections
from tunekit.config.yaml_io import dump_yaml
from tunekit.errors import AllTrialsFailed, StateError
from tunekit.runs import StudyDir, append_jsonl, write_text
from tunekit.space import SearchSpace
from tunekit.study import faults
from tunekit.study.liveness import counted
from tunekit.study.storage import describe_storage, open_storage
from tunekit.study.summary import pick_best, summarize

# Keys whose change between runs does not change what a trial means.
_FREE_TO_CHANGE = {"name", "study.trials", "train.device", "train.threads"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the running trial is closed properly (Python's default dies silently)."""


@dataclass
class SearchOptions:
    runs: Path = Path("runs")
    study: str | None = None
    trials: int | None = None
    timeout_s: float | None = None
    storage: str | None = None
    device: str | None = None
    fresh: bool = False
    repair: bool = False
    workers: int = 1
    devices: list[str] | None = None  # --devices: worker i trains on devices[i % len]
    threads: int | None = None  # torch threads per worker (default: train.threads, else cores // workers)
    quiet: bool = False
    verbose: bool = False  # a line per epoch
    worker_index: int = 0  # offsets the sampler seed per worker
    config_name: str | None = None  # the file stem, the last fallback for the study name
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's seed follows from the study seed and its number, whichever worker runs it."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


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


def objectives_of(config: Config) -> list[tuple[str, str]]:
    """(metric, direction) per objective: one for an ordinary study, several for a Pareto study."""
    if config.study.objectives:
        return [(o.metric, o.direction) for o in config.study.objectives]
    return [(config.study.metric, config.study.direction)]


def study_name_for(config: Config, opts: SearchOptions) -> str:
    return opts.study or config.name or opts.config_name or "study"


def _archive(study_dir: StudyDir) -> Path | None:
    """`--fresh`: move the old study aside (never delete a user's results)."""
    if not study_dir.path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    archive = study_dir.path / "archive" / stamp
    archive.mkdir(parents=True)
    for child in list(study_dir.path.iterdir()):
        if child.name != "archive":
            shutil.move(str(child), archive / child.name)
    return archive


def _open_study(config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions):
    import optuna

    from tunekit.study.components import build_sampler_and_pruner

    storage = open_storage(study_dir, opts.storage, opts.repair)
    sampler, pruner = build_sampler_and_pruner(config, space)
    objectives = objectives_of(config)
    study = optuna.create_study(study_name=study_dir.name, storage=storage, sampler=sampler, pruner=pruner,
                                directions=[d for _, d in objectives], load_if_exists=True)
    base = {k: v for k, v in config.raw.items() if k != "search"}
    old_space = study.user_attrs.get("tunekit.space")
    if old_space is not None:
        changed = _differences(old_space, space.fingerprint())
        if changed:
            raise StateError("the search space differs from the one this study was run with:\n  " + "\n  ".join(changed),
                             "rerun with --fresh to start a new study (the old one is archived), or --study NEW_NAME")
        changed = _differences(study.user_attrs.get("tunekit.base", {}), base, _FREE_TO_CHANGE)
        if changed:
            raise StateError("the config differs from the one this study was run with:\n  " + "\n  ".join(changed),
                             "rerun with --fresh to start a new study (the old one is archived), or --study NEW_NAME")
        if [d.name.lower() for d in study.directions] != [d for _, d in objectives]:
            raise StateError(f"this study was run with directions {[d.name.lower() for d in study.directions]}", "use --fresh or another --study")
    else:
        # The space fingerprint goes last: a second process that sees it can rely on the rest.
        study.set_user_attr("tunekit.base", base)
        study.set_user_attr("tunekit.metric", config.study.metric)
        study.set_user_attr("tunekit.objectives", [{"metric": m, "direction": d} for m, d in objectives])
        from tunekit import __version__

        study.set_user_attr("tunekit.version", __version__)
        study.set_user_attr("tunekit.space", space.fingerprint())
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(space.baseline(config.raw), user_attrs={"baseline": True})  # trial 0: the config as written
    return study


class _Pruned(Exception):
    pass


class _TimedOut(Exception):
    pass


def _run_trial(trial, config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions,
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


def _write_best(study, study_dir: StudyDir) -> None:
    best = pick_best(study)
    if best is None:
        return
    raw = best.user_attrs.get("config")
    if raw is not None:
        names = [o["metric"] for o in study.user_attrs.get("tunekit.objectives") or []] or [study.user_attrs.get("tunekit.metric")]
        shown = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, best.values))
        rule = " (Pareto front member best in the first objective)" if len(best.values) > 1 else ""
        header = f"# best trial #{best.number} of study '{study.study_name}'{rule}: {shown}\n"
        write_text(study_dir.best_yaml, header + dump_yaml(raw))


def _progress_line(done: int, target: int, trial, state: str, outcome: Any, study, metric: str, duration: float, params: dict) -> str:
    shown = " ".join(f"{k}={_short(v)}" for k, v in params.items())
    if state == "COMPLETE" and isinstance(outcome, list):
        names = [o["metric"] for o in study.user_attrs.get("tunekit.objectives", [])]
        what = " ".join(f"{n}={v:.4g}" for n, v in zip(names, outcome))
    elif state == "COMPLETE":
        what = f"{metric}={outcome:.4f}"
    elif state == "FAIL":
        what = f"reason={outcome}"
    else:
        what = f"pruned at epoch {trial.user_attrs.get('pruned_at_epoch', '?')}"
    best = pick_best(study)
    if best is None:
        best_text = "best=-"
    elif len(best.values) > 1:
        best_text = f"pareto front: {len(study.best_trials)} trials"
    else:
        best_text = f"best={best.value:.4f} (#{best.number})"
    return f"[{done:>{len(str(target))}}/{target}] trial {trial.number:<4} {state:<8} {what:<24} {best_text}  {duration:5.1f}s  {shown}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def prepare_study(config: Config, opts: SearchOptions) -> tuple[Config, SearchSpace, StudyDir]:
    """Check everything, then create or load the study. Nothing is written before the checks pass."""
    from tunekit.build import check_buildable

    study_dir = StudyDir(opts.runs, study_name_for(config, opts))
    config = check_buildable(config)
    space, problems = SearchSpace.parse(config)
    target = opts.trials or config.study.trials
    if not problems and len(space) == 0 and target > 1:
        from tunekit.errors import Problem

        problems = [Problem("search", f"has no entries, so all {target} trials would train the same config",
                            hint="add entries such as optimizer.lr: {low: 1e-4, high: 1e-1, log: true}, or use `tunekit train CONFIG`")]
    if problems:
        from tunekit.errors import ConfigError

        raise ConfigError(problems, config.source)
    from tunekit.study.components import build_sampler_and_pruner

    build_sampler_and_pruner(config, space)  # their argument errors too come before any write
    if opts.fresh:
        archived = _archive(study_dir)
        if archived:
            opts.log(f"archived the previous study to {archived}")
    _quiet_optuna()
    study = _open_study(config, space, study_dir, opts)
    if not study_dir.config.exists():
        write_text(study_dir.config, dump_yaml(config.raw))
    opts.log(f"study '{study_dir.name}' in {describe_storage(study_dir, opts.storage)}: "
             f"{sum(map(counted, study.get_trials(deepcopy=False)))}/{target} trials done, "
             + ", ".join(f"{d} {m}" for m, d in objectives_of(config)))
    return config, space, study_dir


def _quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@contextlib.contextmanager
def _ask_lock(study_dir: StudyDir, opts: SearchOptions):
    """Serialize count-then-ask between workers sharing a journal, so the study total is exact.

    With a database URL the workers may sit on other machines, where no file lock reaches: there
    the total can overshoot by at most one trial per extra worker."""
    if opts.storage:
        yield
        return
    import fcntl

    with open(study_dir.path / ".ask.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def work(config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions, deadline: float | None, label: str = "") -> None:
    """One worker's loop: recover dead trials, take the next trial if the study needs one, run it, tell it."""
    import optuna

    from tunekit.study.components import build_sampler_and_pruner
    from tunekit.study.liveness import Heartbeat, recover_dead_trials

    _quiet_optuna()
    sampler, pruner = build_sampler_and_pruner(config, space, worker=opts.worker_index)
    study = optuna.load_study(study_name=study_dir.name, storage=open_storage(study_dir, opts.storage), sampler=sampler, pruner=pruner)
    target = opts.trials or config.study.trials
    while True:
        with _ask_lock(study_dir, opts):
            recover_dead_trials(study, opts.log)
            done = sum(map(counted, study.get_trials(deepcopy=False)))
            if done >= target:
                return
            if deadline is not None and time.monotonic() >= deadline:
                opts.log(f"{label}timeout reached; rerun the same command to continue")
                return
            trial = study.ask()
        started = time.perf_counter()
        try:
            with Heartbeat(study, trial._trial_id), _alarm(deadline):
                state, outcome = _run_trial(trial, config, space, study_dir, opts, deadline)
        except KeyboardInterrupt:
            trial.set_user_attr("reason", "interrupted")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
            raise
        except BaseException:
            # Whatever escaped (a full disk, a storage error): never leave the trial RUNNING.
            with contextlib.suppress(Exception):
                trial.set_user_attr("reason", "error")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        if state == "COMPLETE":
            study.tell(trial, outcome)
            best = pick_best(study)
            if best is not None and best.number == trial.number:
                _write_best(study, study_dir)  # only when this trial took the lead
        else:
            study.tell(trial, state=getattr(optuna.trial.TrialState, state))
        finished = sum(1 for t in study.get_trials(deepcopy=False) if counted(t) and t.state.is_finished())
        opts.log(label + _progress_line(finished, target, trial, state, outcome, study, config.study.metric,
                                        time.perf_counter() - started, space.values_from(trial.params)))


ALARM_GRACE_S = 2.0


@contextlib.contextmanager
def _alarm(deadline: float | None):
    """Stop a trial stuck inside an epoch (the epoch-end check never comes) shortly after --timeout.
    SIGALRM works in the main thread only; elsewhere the epoch-end check is all there is."""
    if deadline is None or not _main_thread():
        yield
        return

    def expired(signum, frame):
        raise _TimedOut("mid-epoch")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.monotonic() + ALARM_GRACE_S))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_search(config: Config, opts: SearchOptions) -> dict[str, Any]:
    """Run the study to its trial target (or timeout) with `opts.workers` processes. Returns the SPEC §6 summary."""
    config, space, study_dir = prepare_study(config, opts)
    deadline = time.monotonic() + opts.timeout_s if opts.timeout_s else None
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
    try:
        if opts.workers <= 1:
            _set_threads(opts.threads or config.train.threads)
            work(config, space, study_dir, opts, deadline)
        else:
            from tunekit.study.workers import run_workers

            run_workers(config, study_dir, opts)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)

    from tunekit.study.storage import load_study

    study = load_study(study_dir, opts.storage)
    _write_best(study, study_dir)
    summary = summarize(study, describe_storage(study_dir, opts.storage))
    states = summary["states"]
    real_failures = {r: n for r, n in summary["reasons"].items() if r not in ("timeout", "interrupted", "worker_died")}
    if states["COMPLETE"] == 0 and states["PRUNED"] == 0 and real_failures:
        top = ", ".join(f"{r} x{n}" for r, n in real_failures.items())
        raise AllTrialsFailed(f"every trial failed ({top})", "see runs/<study>/trials/*/ and `tunekit report`; lower the learning rate or fix the config")
    return summary


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _raise_terminated(signum, frame):
    raise Terminated()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
