"""`study.population: K`: ask K trials at a time and train those that share an architecture together.

The first trial of a population is sampled freely. The others are asked with its shared values
fixed (Optuna's enqueue_trial with partial params), so the sampler chooses only what members may
differ in: optimizer numbers, init, schedule (tunekit.train.vectorized.is_member_key). Each trial is
still its own Optuna trial: it reports every epoch, is pruned alone, and is told its own outcome.

Trials that cannot share (a queued retry with other values, an optimizer without a vectorized
form, batch norm) are trained one at a time, as without a population.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import optuna

from tunekit import reasons
from tunekit.components.samplers import queue_next, space_is_finite
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


def train_jobs(jobs: list[TrialJob], log, told: set[str]) -> list[tuple[str, Any]]:
    """Train the asked trials, together where they can; returns each one's (state, value or reason), in order.
    `told`: why-nots already logged by this worker (each is said once, not once per population)."""
    outcomes: dict[int, tuple[str, Any]] = {}
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        if job.problem:
            outcomes[i] = job.fail(reasons.ERROR, job.problem)
        else:
            groups.setdefault(shared_part(job.raw), []).append(i)
    for members in groups.values():
        for i, outcome in zip(members, _train_group([jobs[i] for i in members], log, told)):
            outcomes[i] = outcome
    return [outcomes[i] for i in range(len(jobs))]


def _train_group(group: list[TrialJob], log, told: set[str]) -> list[tuple[str, Any]]:

    if len(group) == 1:
        return [group[0].train_alone()]
    outcomes: dict[int, tuple[str, Any]] = {}
    try:
        built, split, blocked = [], None, None
        for i, job in enumerate(group):
            try:
                split = job.build(split).split  # one copy of the data on the device for all members
            except Exception as exc:
                outcomes[i] = job.conclude(exc=exc)
                continue
            built.append(i)
            blocked = why_not(job.run) if len(built) == 1 else blocked
            if blocked is not None:
                break  # the first member decides for all: the others need not be built to train alone
        members = [group[i] for i in built]
        if blocked is not None or len(members) < 2:
            if blocked is not None and blocked[1] not in told:
                told.add(blocked[1])
                log(f"trials {', '.join(str(j.trial.number) for j in group)} train one at a time: {blocked[1]}")
            for i, job in enumerate(group):
                if i not in outcomes:
                    job.release()
                    outcomes[i] = job.train_alone()
        else:
            shuffle_seed = members[0].seed
            results = fit_population(
                [j.run for j in members],
                shuffle_seed=shuffle_seed,
                monitor=members[0].monitor,
                direction=members[0].direction,
                on_epoch=[j.on_epoch for j in members],
            )
            if _out_of_memory_at_once(members, results):
                # K copies of a model that fits once may not fit K times: try the population in halves,
                # down to single trials (which then fail as oom like any trial), before failing anyone.
                log(
                    f"a population of {len(members)} ran out of memory before its first epoch ended: training it in halves"
                )
                for job in members:
                    job.release()
                half = len(members) // 2
                halves = _train_group(members[:half], log, told) + _train_group(members[half:], log, told)
                outcomes.update(zip(built, halves))
            else:
                for job in members[1:]:  # so that `train --best` can order batches as this trial saw them
                    job.trial.set_user_attr("shuffle_seed", shuffle_seed)
                for i, job, result in zip(built, members, results):
                    outcomes[i] = (
                        job.conclude(exc=result) if isinstance(result, BaseException) else job.conclude(result)
                    )
    finally:
        for job in group:
            job.release()
    return [outcomes[i] for i in range(len(group))]


def _out_of_memory_at_once(members: list[TrialJob], results: list) -> bool:
    """Did the shared training step run out of memory before any member finished an epoch?"""
    return all(isinstance(r, BaseException) and "out of memory" in str(r).lower() for r in results) and not any(
        job.epochs_seen for job in members
    )
