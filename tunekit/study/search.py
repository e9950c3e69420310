"""`tunekit search`: check everything, create or resume the study, run its workers, summarize.

Flow per trial (tunekit.study.worker): sample params -> concrete trial config -> build -> fit (the
epoch callback reports to Optuna and may prune) -> tell the outcome. Every trial's config and
metrics land under runs/<study>/trials/NNNNN/, and best.yaml follows the best completed trial.

Failure policy: a trial that diverges or raises is told FAIL with a reason and the study goes
on. Ctrl-C / SIGTERM fail the running trial with reason `interrupted`, queue its params to be
retried, and propagate so the CLI can exit 130/143 with a resume command.
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import Any

from tunekit.components.samplers import build_sampler_and_pruner
from tunekit.config.sections import Config
from tunekit.config.space import SearchSpace
from tunekit.config.yaml_io import dump_yaml
from tunekit.errors import ConfigError, Problem, UsageError
from tunekit.runs import StudyDir, write_text
from tunekit.signals import raise_terminated
from tunekit.study.liveness import counted
from tunekit.study.options import SearchOptions, main_thread, study_name_for
from tunekit.study.resume import archive, open_or_resume
from tunekit.study.session import end_search, open_tracking
from tunekit.study.stopping import Stop
from tunekit.study.storage import database_lock, describe_storage, load_study, remember_url, remembered_url
from tunekit.study.trial import objectives_of
from tunekit.study.worker import best_text, quiet_optuna, work
from tunekit.track.specs import from_section, merged
from tunekit.track.tracking import check_installed
from tunekit.train.build import build_checked, checked_devices, corner_problems, set_threads
from tunekit.train.vectorized import population_problems


def prepare_study(config: Config, opts: SearchOptions) -> tuple[Config, SearchSpace, StudyDir]:
    """Check everything, then create or load the study. Nothing is written before the checks pass.
    With --workers, worker 0 calls this while the other workers import torch."""
    study_dir = StudyDir(opts.runs, study_name_for(config.name, opts))
    if opts.devices:
        opts.devices = checked_devices(opts.devices)
        opts.device = opts.devices[opts.worker_index % len(opts.devices)]
    config, base_run = build_checked(config)
    if opts.workers <= 1:  # this process trains: size its threads by the base model (workers get cores // N)
        opts.threads = set_threads(opts.threads or config.train.threads, base_run)
    space, problems = SearchSpace.parse(config)
    target = opts.trials or config.study.trials
    if not problems and len(space) == 0 and target > 1:
        problems = [
            Problem(
                "search",
                f"has no entries, so all {target} trials would train the same config",
                hint="add entries such as optimizer.lr: {low: 1e-4, high: 1e-1, log: true}, or use `tunekit train CONFIG`",
            )
        ]
    if not problems:
        problems = corner_problems(config, space, base_run.split)
    if not problems:
        problems = population_problems(config, space, base_run)
    if problems:
        raise ConfigError(problems, config.source)
    build_sampler_and_pruner(config, space)  # their argument errors too come before any write
    if opts.warm_start:
        if opts.warm_start == study_dir.name:
            raise UsageError("--warm-start names the study being searched", "name another study")
        load_study(StudyDir(opts.runs, opts.warm_start), None)  # it exists and reads, before any write
    if opts.fresh:
        archived = archive(study_dir)
        if archived:
            opts.log(f"archived the previous study to {archived}")
    quiet_optuna()
    if not opts.fresh:
        opts.storage = remembered_url(study_dir, opts.storage)  # rerun without --storage: the same database
    # On a database, machines starting at once would race to create the schema and the baseline.
    with database_lock(opts.storage, study_dir.name) if opts.storage else contextlib.nullcontext():
        study = open_or_resume(config, space, study_dir, opts)
    if opts.storage:
        remember_url(study_dir, opts.storage)
    if not study_dir.config.exists():
        write_text(study_dir.config, dump_yaml(config.raw))
    # Finished trials only: a RUNNING one may be a killed run's, which the first worker recovers and retries.
    done = sum(1 for t in study.get_trials(deepcopy=False) if counted(t) and t.state.is_finished())
    opts.log(
        f"study '{study_dir.name}' in {describe_storage(study_dir, opts.storage)}: {done}/{target} trials done, "
        + ", ".join(f"{d} {m}" for m, d in objectives_of(config))
    )
    if done >= target:
        opts.log(f"nothing to run: --trials is the study's total ({target}); pass --trials {done + 10} to add 10 more")
    opts.emit(
        kind="study", name=study_dir.name, metric=config.study.metric, done=done, target=target, best=best_text(study)
    )
    return config, space, study_dir


def run_search(config: Config, opts: SearchOptions) -> dict[str, Any]:
    """Run the study in this process to its trial target (or timeout). Returns the SPEC §6 summary.
    (`--workers N` runs it in N processes instead: tunekit.study.workers.search_in_workers.)"""
    opts.started_at = opts.started_at or time.time()
    specs = merged(from_section(config.tracking), opts.track)
    check_installed(specs)  # a missing extra is refused before anything is written
    config, space, study_dir = prepare_study(config, opts)
    deadline = time.monotonic() + opts.timeout_s if opts.timeout_s else None
    previous_term = signal.signal(signal.SIGTERM, raise_terminated) if main_thread() else None
    stop = Stop(opts.started_at)
    objectives = objectives_of(config)
    tracking = opts.tracking = open_tracking(specs, study_dir, objectives, "", owner=True) if specs else None
    try:
        work(config, space, study_dir, opts, deadline, stop=stop)
    except BaseException:
        if tracking:
            tracking.close(interrupted=True)
        raise
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    if stop.local:
        if tracking:
            tracking.close(interrupted=True)
        raise KeyboardInterrupt()  # a first Ctrl-C: the running trial finished; exit 130 with the resume command
    return end_search(study_dir, opts.storage, objectives, tracking)
