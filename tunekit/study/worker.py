"""One worker's loop: take the next trial (or population) under the ask lock, train it with its
heartbeat and the --timeout alarm on, tell it. Whatever stops a trial's training is recorded on the
trial, never lost: Ctrl-C / SIGTERM close the running trial as `interrupted` and queue its params."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from tunekit import reasons
from tunekit.components.samplers import build_sampler_and_pruner, queue_next, space_covered
from tunekit.config.sections import Config
from tunekit.config.space import SearchSpace
from tunekit.report.summary import outcome as outcome_of
from tunekit.report.summary import pick_best
from tunekit.runs import StudyDir, open_lock
from tunekit.study import faults
from tunekit.study.alarm import armed
from tunekit.study.closing import close_failed, closed_elsewhere, is_disk_full, retry_later, tell
from tunekit.study.grouping import ask_population, train_jobs
from tunekit.study.liveness import Heartbeat, Tally, claim, recover_dead_trials
from tunekit.study.options import SearchOptions, TimedOut
from tunekit.study.session import open_tracking
from tunekit.study.stopping import Stop
from tunekit.study.storage import (
    ask,
    database_lock,
    open_storage,
    silent_storage,
    storage_lost,
    storage_of,
    storage_timeout,
    trial_id,
)
from tunekit.study.trial import TrialJob, objectives_of
from tunekit.track.tracking import trial_key
from tunekit.train.build import warm_up


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@contextlib.contextmanager
def _ask_lock(study_dir: StudyDir, opts: SearchOptions):
    """Serialize count-then-ask between workers sharing a study, so the study total is exact: a file
    lock beside the journal, or the database's own lock when workers may sit on other machines."""
    if opts.storage:
        with database_lock(opts.storage, study_dir.name):
            yield
        return
    fd = open_lock(study_dir.sub(".ask.lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock; a killed holder's is released by the kernel


def work(
    config: Config,
    space: SearchSpace,
    study_dir: StudyDir,
    opts: SearchOptions,
    deadline: float | None,
    label: str = "",
    stop: Stop | None = None,
) -> None:
    """One worker's loop: recover dead trials, take the next trial (or population) if the study needs
    one, train it, tell it. Whatever stops a trial's training is recorded on the trial, never lost.
    A first Ctrl-C or `tunekit stop` (`stop`) lets the running trial finish and takes no new one."""
    stop = stop or Stop(opts.started_at)
    try:
        with stop.on_first_ctrl_c(lambda line: opts.log(label + line)):
            _work(config, space, study_dir, opts, deadline, label, stop)
    except Exception as exc:
        lost = storage_lost(exc)
        if lost is None:
            raise
        raise lost from None


def _work(
    config: Config,
    space: SearchSpace,
    study_dir: StudyDir,
    opts: SearchOptions,
    deadline: float | None,
    label: str,
    stop: Stop,
) -> None:
    quiet_optuna()
    own_tracking = opts.tracking is None and bool(opts.track)
    if own_tracking:  # a --workers worker: its own trackers, on the parent run `search` made
        opts.tracking = open_tracking(opts.track, study_dir, objectives_of(config), label, owner=False)
    try:
        _loop(config, space, study_dir, opts, deadline, label, stop)
    except BaseException:
        if own_tracking:
            opts.tracking.close(interrupted=True)
        raise
    else:
        if own_tracking:
            opts.tracking.close()


def track_outcome(tracking, trial, state: str, outcome: Any, config: Config, space: SearchSpace) -> None:
    if not tracking:
        return
    values, reason = {}, None
    if state == "COMPLETE":
        got = outcome if isinstance(outcome, list) else [outcome]
        values = {f"objective.{metric}": value for (metric, _), value in zip(objectives_of(config), got)}
    elif state == "FAIL":
        reason = str(outcome)
    tracking.trial_ended(trial_key(trial.number), state, reason, values, space.values_from(trial.params))


def _loop(
    config: Config,
    space: SearchSpace,
    study_dir: StudyDir,
    opts: SearchOptions,
    deadline: float | None,
    label: str,
    stop: Stop,
) -> None:
    study = optuna.load_study(study_name=study_dir.name, storage=open_storage(study_dir, opts.storage))
    # Queued trials (the baseline, retries) are not history: they hold no draw of a sampler.
    history = sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    study.sampler, study.pruner = build_sampler_and_pruner(config, space, worker=opts.worker_index, history=history)
    target = opts.trials or config.study.trials
    told: set[str] = set()  # notes already given by this worker (each is said once)
    warm_up(config, opts.device or config.train.device)
    beat = config.study.heartbeat
    watch = {}
    if opts.storage:
        watch = dict(
            probe=lambda: storage_of(study).get_study_id_from_name(study_dir.name),
            silent_after=3 * storage_timeout(),
            on_silent=lambda quiet: _give_up_on_silent_storage(quiet, label),
        )
    tally = Tally(study)  # the study's totals, reading only its unfinished trials after each one
    with Heartbeat(storage_of(study), beat.interval, **watch) as beats:
        while True:
            taken = _take_next(study, config, space, study_dir, opts, deadline, target, label, stop, tally)
            if taken is None:
                return
            if taken is WAIT:  # the total is reached only if others' running trials finish: see them end
                time.sleep(min(beat.interval, 1.0))
                continue
            trials, jobs = taken
            started = time.perf_counter()
            pending = list(trials)  # taken and not told yet: what an exception below must close

            def finish(trial, state: str, outcome: Any, pending=pending, started=started) -> None:
                """Tell one trial as soon as it ends (a pruned member of a population, at its epoch)."""
                beats.release([trial_id(trial)])  # no heartbeat lands on a told trial
                tell(study, study_dir, trial, state, outcome, lambda: tally.refresh().best())
                pending.remove(trial)
                track_outcome(opts.tracking, trial, state, outcome, config, space)
                tally.refresh()
                finished, best = tally.finished(), tally.best()
                duration = time.perf_counter() - started
                metric = config.study.metric
                if opts.events is None:
                    params = space.values_from(trial.params)
                    line = progress_line(finished, target, trial, state, outcome, study, metric, duration, params, best)
                    opts.log(label + line)
                else:
                    opts.emit(
                        kind="end",
                        trial=trial.number,
                        state=state,
                        what=outcome_text(trial, state, outcome, study, metric),
                        best=best_text(study, best),
                        done=finished,
                        target=target,
                        duration=duration,
                    )

            trials = pending
            try:
                _train(beats, trials, jobs, config, space, study_dir, opts, deadline, told, finish)
            except KeyboardInterrupt:
                for trial in trials:
                    retry_later(study, trial)
                raise
            except Exception as exc:
                if storage_lost(exc):
                    # The database is gone: writing the trials' outcome would fail (or wait) too. They
                    # stay RUNNING, and the next run recovers them (a dead pid here, a stale heartbeat elsewhere).
                    raise
                if is_disk_full(exc):
                    for trial in trials:
                        retry_later(study, trial, reasons.DISK_FULL)  # the trial did nothing wrong: it keeps its slot
                    raise
                dropped = [t for t in trials if closed_elsewhere(study, t)]
                if not dropped:
                    for trial in trials:
                        close_failed(study, trial)
                    raise
                # This worker was paused past the heartbeat grace (SIGSTOP, a sleeping laptop), so another
                # worker failed its trial as worker_died and queued its params again. That rerun stands.
                opts.log(
                    f"{label}trial {', '.join(str(t.number) for t in dropped)} was closed by another worker while this one "
                    "was unresponsive; this result is dropped (the trial's params were queued again)"
                )
                for trial in trials:
                    if trial not in dropped:
                        retry_later(study, trial)
            except BaseException:
                for trial in trials:
                    close_failed(study, trial)
                raise


def _give_up_on_silent_storage(quiet: float, label: str) -> None:
    """The study's database took `quiet` seconds over one heartbeat: end this process now, with the
    lost-storage line and its exit code. Its trials stay RUNNING, as after any lost database; nothing
    else is left half-written (trial files are appended line by line, best.yaml replaced whole)."""
    error = silent_storage(quiet)
    for line in error.lines():
        print(f"{label}error: {line}", file=sys.stderr, flush=True)
    os._exit(error.exit_code)


WAIT = object()  # _take_next: nothing to take now, but the study is not done
LOOK_UP = object()  # best_text: no best trial given, ask the study


def _take_next(
    study,
    config: Config,
    space: SearchSpace,
    study_dir: StudyDir,
    opts: SearchOptions,
    deadline: float | None,
    target: int,
    label: str,
    stop: Stop,
    tally: Tally | None = None,
):
    """Under the ask lock: (trials, jobs) to run next, jobs being None for a single trial; None when
    the study is done (its total reached, --timeout passed, a finite sampler's space covered)."""
    with _ask_lock(study_dir, opts):
        # Under the lock the tally reads the storage afresh: other workers' trials are in it.
        tally = (tally or Tally(study)).refresh()
        # Under the journal's ask lock every trial is asked and claimed at once, so an unclaimed
        # RUNNING trial is one whose asker was killed in between.
        if recover_dead_trials(
            study,
            opts.log,
            config.study.max_retries,
            unclaimed_is_dead=not opts.storage,
            stale_after=config.study.heartbeat.grace,
            running=tally.running(),
        ):
            tally.refresh()
        done = tally.done()
        if done >= target:
            # A RUNNING trial counts, but only while its worker lives (it may be on another machine):
            # wait for it to end or be found dead, so no trial is left RUNNING and the total holds.
            running = bool(tally.running())
            return WAIT if running and (deadline is None or time.monotonic() < deadline) else None
        if stop.asked(study):
            opts.log(f"{label}stopped as asked at {done} of {target} trials; rerun the same command to continue")
            return None
        if deadline is not None and time.monotonic() >= deadline:
            opts.log(f"{label}timeout reached; rerun the same command to continue")
            return None
        if space_covered(study.sampler, study) or not queue_next(study):
            opts.log(
                f"{label}the {config.sampler.name} sampler has tried every point of the search space: "
                f"stopping at {done} of {target} trials"
            )
            return None
        size = population_size(config.study.population, done, target, ramp=config.study.population_ramp)
        if size == 1:
            # Read again: queue_next may just have queued a grid point.
            trials, jobs = [ask(study, queued=tally.refresh().queued())], None
        else:
            jobs = ask_population(study, size, config, space, study_dir, opts, deadline)
            trials = [job.trial for job in jobs]
        faults.fire_at("ask", trials[0].number)
        claim(storage_of(study), [trial_id(trial) for trial in trials])
        return trials, jobs


def population_size(population: int, done: int, target: int, ramp: bool = True) -> int:
    """How many trials to take together now. A member that runs all its epochs is told when its
    population's last epoch ends, and K members take longer per epoch than one trial: so with `ramp`
    (study.population_ramp, the default) the study's first trial runs alone (its first result comes
    as soon as a lone trial's would, and the sampler and pruner start learning), then populations
    double, each no bigger than the trials already counted (1, 1, 2, 4, 8, ...), up to `population`."""
    return max(1, min(population, target - done, done if ramp else population))


def _train(
    beats,
    trials,
    jobs,
    config: Config,
    space: SearchSpace,
    study_dir: StudyDir,
    opts: SearchOptions,
    deadline: float | None,
    told: set[str],
    finish,
) -> None:
    """Train the taken trials (alone, or as populations) with their heartbeats and the --timeout
    alarm on, each told by `finish(trial, state, outcome)` as soon as it ends. `trials`: those not
    told yet (finish takes them out)."""
    jobs = list(jobs or [])

    def ended(job: TrialJob, state: str, outcome: Any) -> None:
        finish(job.trial, state, outcome)

    try:
        with beats.running([trial_id(trial) for trial in trials]), armed(deadline):
            if not jobs:
                jobs.append(TrialJob(trials[0], config, space, study_dir, opts, deadline))
            train_jobs(jobs, opts.log, told, ended)
    except TimedOut:
        # The alarm landed outside a trial's own training (while building it, or between two of a
        # population's members), where no trial turned it into an outcome: each trial left is told
        # as timed out here, its best epoch its value if it finished one (else it runs again).
        by_trial = {job.trial.number: job for job in jobs}
        for trial in list(trials):
            job = by_trial.get(trial.number)
            if job is None:
                finish(trial, "FAIL", reasons.TIMEOUT)
            else:
                job.end(ended, exc=TimedOut("mid-epoch"))


def progress_line(
    done: int,
    target: int,
    trial,
    state: str,
    outcome: Any,
    study,
    metric: str,
    duration: float,
    params: dict,
    best_trial=LOOK_UP,
) -> str:
    """The log's line for a trial that ended (the live view shows the same parts)."""
    shown = " ".join(f"{k}={_short(v)}" for k, v in params.items())
    what = outcome_text(trial, state, outcome, study, metric)
    best = best_text(study, best_trial)
    best_shown = best if best.startswith("pareto") else f"best={best}"
    return f"[{done:>{len(str(target))}}/{target}] trial {trial.number:<4} {state:<8} {what:<24} {best_shown}  {duration:5.1f}s  {shown}"


def outcome_text(trial, state: str, outcome: Any, study, metric: str) -> str:
    if state == "COMPLETE" and isinstance(outcome, list):
        names = [o["metric"] for o in study.user_attrs.get("tunekit.objectives", [])]
        return " ".join(f"{n}={v:.4g}" for n, v in zip(names, outcome))
    if state == "COMPLETE":
        cut = outcome_of(trial).get("cut_short")
        return f"{metric}={outcome:.4f}" + (
            f" (cut by {cut} at epoch {outcome_of(trial).get('epochs_run')})" if cut else ""
        )
    if state == "FAIL":
        return f"reason={outcome}"
    return f"pruned at epoch {outcome_of(trial).get('pruned_at_epoch', '?')}"


def best_text(study, best=LOOK_UP) -> str:
    """The best so far: `0.9861 (#1)`, `-` before any, `pareto front: N trials` for several objectives.
    `best`: the best trial (None: none yet) when the caller has it (a Tally's), else it is looked up."""
    best = pick_best(study) if best is LOOK_UP else best
    if best is None:
        return "-"
    if len(best.values) > 1:
        return f"pareto front: {len(study.best_trials)} trials"
    return f"{best.value:.4f} (#{best.number})"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)
