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
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunekit.config.sections import Config
from tunekit.config.yaml_io import dump_yaml
from tunekit.errors import AllTrialsFailed
from tunekit.runs import StudyDir, write_text
from tunekit.space import SearchSpace
from tunekit.study.liveness import counted
from tunekit.study.resume import _archive, open_or_resume
from tunekit.study.trial import _TimedOut, objectives_of, run_trial, trial_seed  # noqa: F401 (trial_seed: used by train --best)
from tunekit.study.storage import describe_storage, open_storage
from tunekit.study.summary import outcome as outcome_of, pick_best, summarize



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


def study_name_for(config: Config, opts: SearchOptions) -> str:
    return opts.study or config.name or opts.config_name or "study"


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
        what = f"pruned at epoch {outcome_of(trial).get('pruned_at_epoch', '?')}"
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
    from tunekit.build import build_checked
    from tunekit.errors import Problem

    study_dir = StudyDir(opts.runs, study_name_for(config, opts))
    config, base_run = build_checked(config)
    space, problems = SearchSpace.parse(config)
    target = opts.trials or config.study.trials
    if not problems and len(space) == 0 and target > 1:
        problems = [Problem("search", f"has no entries, so all {target} trials would train the same config",
                            hint="add entries such as optimizer.lr: {low: 1e-4, high: 1e-1, log: true}, or use `tunekit train CONFIG`")]
    if not problems:
        from tunekit.population import population_problems

        problems = population_problems(config, space, base_run)
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
    study = open_or_resume(config, space, study_dir, opts)
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
    """One worker's loop: recover dead trials, take the next trial (or population) if the study needs
    one, train it, tell it. Whatever stops a trial's training is recorded on the trial, never lost."""
    import optuna

    from tunekit.build import warm_up
    from tunekit.study.components import build_sampler_and_pruner
    from tunekit.study.liveness import Heartbeat

    _quiet_optuna()
    sampler, pruner = build_sampler_and_pruner(config, space, worker=opts.worker_index)
    study = optuna.load_study(study_name=study_dir.name, storage=open_storage(study_dir, opts.storage), sampler=sampler, pruner=pruner)
    target = opts.trials or config.study.trials
    told: set[str] = set()  # notes already given by this worker (each is said once)
    warm_up(config, opts.device or config.train.device)
    with Heartbeat(study._storage) as beats:
        while True:
            taken = _take_next(study, config, space, study_dir, opts, deadline, target, label)
            if taken is None:
                return
            trials, jobs = taken
            started = time.perf_counter()
            try:
                outcomes = _train(beats, trials, jobs, config, space, study_dir, opts, deadline, told)
                for trial, (state, outcome) in zip(trials, outcomes):
                    _tell(study, study_dir, trial, state, outcome)
                    finished = sum(1 for t in study.get_trials(deepcopy=False) if counted(t) and t.state.is_finished())
                    opts.log(label + _progress_line(finished, target, trial, state, outcome, study, config.study.metric,
                                                    time.perf_counter() - started, space.values_from(trial.params)))
            except KeyboardInterrupt:
                for trial in trials:
                    _retry_later(study, trial)
                raise
            except Exception:
                dropped = [t for t in trials if _closed_elsewhere(study, t)]
                if not dropped:
                    for trial in trials:
                        _close_failed(study, trial)
                    raise
                # This worker was paused past the heartbeat grace (SIGSTOP, a sleeping laptop), so another
                # worker failed its trial as worker_died and queued its params again. That rerun stands.
                opts.log(f"{label}trial {', '.join(str(t.number) for t in dropped)} was closed by another worker while this one "
                         "was unresponsive; this result is dropped (the trial's params were queued again)")
                for trial in trials:
                    if trial not in dropped:
                        _retry_later(study, trial)
            except BaseException:
                for trial in trials:
                    _close_failed(study, trial)
                raise


def _take_next(study, config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions,
               deadline: float | None, target: int, label: str):
    """Under the ask lock: (trials, jobs) to run next, jobs being None for a single trial; None when
    the study is done (its total reached, --timeout passed, a finite sampler's space covered)."""
    from tunekit.study.components import space_covered
    from tunekit.study.liveness import recover_dead_trials

    with _ask_lock(study_dir, opts):
        recover_dead_trials(study, opts.log)
        done = sum(map(counted, study.get_trials(deepcopy=False)))
        if done >= target:
            return None
        if deadline is not None and time.monotonic() >= deadline:
            opts.log(f"{label}timeout reached; rerun the same command to continue")
            return None
        if space_covered(study.sampler, study):
            opts.log(f"{label}the {config.sampler.name} sampler has tried every point of the search space: "
                     f"stopping at {done} of {target} trials")
            return None
        size = min(config.study.population, target - done)
        if size == 1:
            return [study.ask()], None
        from tunekit.study.population import ask_population

        jobs = ask_population(study, size, config, space, study_dir, opts, deadline)
        return [job.trial for job in jobs], jobs


def _train(beats, trials, jobs, config: Config, space: SearchSpace, study_dir: StudyDir, opts: SearchOptions,
           deadline: float | None, told: set[str]) -> list[tuple[str, Any]]:
    """Train the taken trials (alone, or as populations) with their heartbeats and the --timeout alarm on."""
    with beats.running([trial._trial_id for trial in trials]), _alarm(deadline):
        if jobs is None:
            return [run_trial(trials[0], config, space, study_dir, opts, deadline)]
        from tunekit.study.population import train_jobs

        return train_jobs(jobs, opts.log, told)


def _tell(study, study_dir: StudyDir, trial, state: str, outcome: Any) -> None:
    import optuna

    if state != "COMPLETE":
        study.tell(trial, state=getattr(optuna.trial.TrialState, state))
        return
    study.tell(trial, outcome)
    best = pick_best(study)
    if best is not None and best.number == trial.number:
        _write_best(study, study_dir)  # only when this trial took the lead


def _retry_later(study, trial) -> None:
    """Close a running trial as interrupted and queue its params to run again (it does not count)."""
    import optuna

    with contextlib.suppress(Exception):  # already closed (told, or by another worker): nothing to record
        trial.set_user_attr("reason", "interrupted")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})


def _closed_elsewhere(study, trial) -> bool:
    """Did another worker finish this trial (as worker_died) while we held it?"""
    try:
        stored = study._storage.get_trial(trial._trial_id)
    except Exception:
        return False
    return stored.state.is_finished() and stored.user_attrs.get("reason") == "worker_died"


def _close_failed(study, trial) -> None:
    """Whatever escaped (a full disk, a storage error): never leave the trial RUNNING."""
    import optuna

    with contextlib.suppress(Exception):
        trial.set_user_attr("reason", "error")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


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
