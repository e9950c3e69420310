"""`study.population: K`: ask K trials at a time and train those that share an architecture together.

The first trial of a population is sampled freely. The others are asked with its shared values
fixed (Optuna's enqueue_trial with partial params), so the sampler chooses only what members may
differ in: optimizer numbers, init, schedule (tunekit.train.vectorized.is_member_key). Each trial is
still its own Optuna trial: it reports every epoch, is pruned alone, and is told its own outcome
the moment it ends (fit_population's on_end hook), not when its population's last member ends.

Trials that cannot share (a queued retry with other values, an optimizer without a vectorized
form, batch norm) are trained one at a time, as without a population.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from tunekit import reasons
from tunekit.components.samplers import queue_next, space_is_finite
from tunekit.study.alarm import shielded
from tunekit.study.closing import close_failed
from tunekit.study.trial import TrialJob
from tunekit.train.vectorized import fit_population, is_member_key, why_not

if TYPE_CHECKING:
    from tunekit.config.sections import Config
    from tunekit.config.space import SearchSpace
    from tunekit.runs import StudyDir
    from tunekit.study.options import SearchOptions


def ask_population(
    study,
    size: int,
    config: Config,
    space: SearchSpace,
    study_dir: StudyDir,
    opts: SearchOptions,
    deadline: float | None,
) -> list[TrialJob]:
    """Ask `size` trials meant to train together (called under the ask lock, so no other local
    worker can take the trials queued here). If anything fails midway, the trials asked so far are
    closed as failed, never left RUNNING."""

    asked = []
    try:
        first = study.ask()
        asked.append(first)
        jobs = [TrialJob(first, config, space, study_dir, opts, deadline)]
        shared = {k: v for k, v in first.params.items() if not is_member_key(k)}
        # Grid and brute force walk the space point by point (the grid sampler refuses partly fixed
        # trials; brute force would repeat points): there, trials are asked as they come and those
        # that happen to share an architecture train together.
        couple = bool(shared) and not space_is_finite(study.sampler)
        for _ in range(size - 1):
            if not queue_next(study):
                break  # the grid has no unvisited point left for another member
            # Queued retries go first, with their own values; they join a population only if they fit.
            if couple and not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
                study.enqueue_trial(shared, skip_if_exists=False)
            trial = study.ask()
            asked.append(trial)
            jobs.append(TrialJob(trial, config, space, study_dir, opts, deadline))
    except BaseException:
        for trial in asked:
            close_failed(study, trial)
        raise
    return jobs


def shared_part(raw: dict[str, Any]) -> str:
    """What members of one population must have in common: the concrete config without member keys."""
    kept = {}
    for section, value in raw.items():
        if section in ("seed", "search"):
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if not is_member_key(f"{section}.{k}")}
        kept[section] = value
    return json.dumps(kept, sort_keys=True, default=str)


Ended = Callable[[TrialJob, str, Any], None]


def train_jobs(jobs: list[TrialJob], log, told: set[str], ended: Ended) -> None:
    """Train the asked trials, together where they can. Each one's (state, value or reason) goes to
    `ended` as soon as it is known, so a member pruned at epoch 3 is told at epoch 3 and its result
    is not held back until its population ends. `told`: why-nots already logged by this worker
    (each is said once, not once per population)."""
    groups: dict[str, list[TrialJob]] = {}
    for job in jobs:
        if job.problem:
            job.end(ended, outcome=job.fail(reasons.ERROR, job.problem))
        else:
            groups.setdefault(shared_part(job.raw), []).append(job)
    for group in groups.values():
        _train_group(group, log, told, ended)


def _train_group(group: list[TrialJob], log, told: set[str], ended: Ended) -> None:

    if len(group) == 1:
        group[0].train_alone(ended)
        return
    try:
        built, split, blocked, failed = [], None, None, set()
        for job in group:
            try:
                split = job.build(split).split  # one copy of the data on the device for all members
            except Exception as exc:
                failed.add(id(job))
                job.end(ended, exc=exc)
                continue
            built.append(job)
            blocked = why_not(job.run) if len(built) == 1 else blocked
            if blocked is not None:
                break  # the first member decides for all: the others need not be built to train alone
        if blocked is not None or len(built) < 2:
            if blocked is not None and blocked[1] not in told:
                told.add(blocked[1])
                log(f"trials {', '.join(str(j.trial.number) for j in group)} train one at a time: {blocked[1]}")
            for job in group:
                if id(job) not in failed:
                    job.release()
                    job.train_alone(ended)
            return
        _train_population(built, log, told, ended)
    finally:
        for job in group:
            job.release()


def _train_population(members: list[TrialJob], log, told: set[str], ended: Ended) -> None:
    shuffle_seed = members[0].seed
    with shielded():
        for job in members[1:]:  # so that `train --best` can order batches as this trial saw them
            job.trial.set_user_attr("shuffle_seed", shuffle_seed)
    held: dict[int, BaseException] = {}  # out of memory before any epoch: maybe the population is too big

    def on_end(job: TrialJob):
        def end(result) -> None:
            if isinstance(result, BaseException) and "out of memory" in str(result).lower() and not job.epochs_seen:
                held[id(job)] = result
                return
            if isinstance(result, BaseException):
                job.end(ended, exc=result)
            else:
                job.end(ended, result)

        return end

    fit_population(
        [j.run for j in members],
        shuffle_seed=shuffle_seed,
        monitor=members[0].monitor,
        direction=members[0].direction,
        on_epoch=[j.on_epoch for j in members],
        on_end=[on_end(j) for j in members],
    )
    if len(held) == len(members) and len(members) > 1:
        # K copies of a model that fits once may not fit K times: try the population in halves,
        # down to single trials (which then fail as oom like any trial), before failing anyone.
        log(f"a population of {len(members)} ran out of memory before its first epoch ended: training it in halves")
        with shielded():
            for job in members:
                job.release()
                job.trial.set_user_attr("shuffle_seed", job.seed)  # until a half's population says otherwise
        half = len(members) // 2
        _train_group(members[:half], log, told, ended)
        _train_group(members[half:], log, told, ended)
        return
    for job in members:
        if id(job) in held:
            job.end(ended, exc=held[id(job)])
