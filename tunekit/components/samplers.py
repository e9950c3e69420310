"""Samplers and pruners by config name, each a typed function so the config is checked against it.

Names and arguments follow tunekit's vocabulary (`warmup_epochs`, not `n_warmup_steps`): a
pruner's "step" is an epoch here, and the config should say so.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import optuna

from tunekit.config.space import point_key
from tunekit.errors import ConfigError, Problem
from tunekit.registry import Registry

SAMPLERS: Registry = Registry("sampler")


def _steps(warmup_epochs: int) -> int:
    # Optuna leaves steps < n_warmup_steps alone; tunekit reports epochs 1, 2, ..., so protecting
    # `warmup_epochs` epochs means n_warmup_steps = warmup_epochs + 1.
    return warmup_epochs + 1


PRUNERS: Registry = Registry("pruner")


@SAMPLERS.register("tpe")
def tpe(
    space, seed: int | None = None, startup_trials: int = 10, multivariate: bool = True, constant_liar: bool = True
):
    """Tree-structured Parzen estimator (Optuna's default); `startup_trials` random trials first."""

    with warnings.catch_warnings():  # multivariate TPE is Optuna 5's default yet still flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials, multivariate=multivariate, constant_liar=constant_liar
        )


@SAMPLERS.register("random")
def random(space, seed: int | None = None):

    return optuna.samplers.RandomSampler(seed=seed)


POINT = "tunekit.point"  # user attr: the grid point a trial was queued for


class PointWalk(optuna.samplers.BaseSampler):
    """Grid and brute force: every distinct config of a finite space exactly once.

    Optuna's GridSampler counts a point as visited only through its own grid ids, so a queued
    trial (the baseline, a retry) re-runs a point and leaves another untried, and it refuses
    partial queued params; its grid is also the product of all entries, `when:` or not. Here the
    points are the space's distinct configs (SearchSpace.points) and the worker queues the next
    unvisited one before each ask (`queue_next`), under the ask lock: a point is taken once a
    trial holds it, whatever its state, in this process or another."""

    def __init__(self, points: list[dict], seed: int | None, shuffle: bool):
        self.points = list(points)
        if shuffle:
            np.random.default_rng(seed).shuffle(self.points)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def taken(self, study) -> set[str]:
        keys = set()
        for t in study.get_trials(deepcopy=False):
            if POINT in t.user_attrs:
                keys.add(t.user_attrs[POINT])
            elif t.params:
                keys.add(point_key(t.params))
        return keys

    def next_point(self, study) -> dict | None:
        taken = self.taken(study)
        return next((p for p in self.points if point_key(p) not in taken), None)

    def covered(self, study) -> bool:
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        return not waiting and self.next_point(study) is None

    # Every trial arrives with its point fixed; a param it lacks (none, in practice) is drawn at random.
    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def queue_next(study) -> bool:
    """Before an ask: a point walk queues its next unvisited point, unless a trial is already
    queued (the baseline, a retry), which goes first. False when the walk has no point left."""
    sampler = study.sampler
    if not isinstance(sampler, PointWalk):
        return True
    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        return True
    point = sampler.next_point(study)
    if point is None:
        return False
    study.enqueue_trial(point, user_attrs={POINT: point_key(point)}, skip_if_exists=False)
    return True


def space_is_finite(sampler) -> bool:
    """Does this sampler walk a finite space point by point (grid, bruteforce)?"""
    return isinstance(sampler, PointWalk)


def space_covered(sampler, study) -> bool:
    """Has a finite sampler (grid, bruteforce) tried every point of the search space?"""
    return isinstance(sampler, PointWalk) and sampler.covered(study)


FINITE = ("grid", "bruteforce")


def _points(space, name: str) -> list[dict]:
    for p in space:
        if p.size() is None:
            raise ValueError(f"{name} needs choices or a step for every entry; search.{p.key} is a continuous range")
    return space.points()


@SAMPLERS.register("grid")
def grid(space, seed: int | None = None):
    """Every distinct config of the search space once, in an order drawn from `seed`."""

    return PointWalk(_points(space, "grid"), seed, shuffle=True)


@SAMPLERS.register("bruteforce")
def bruteforce(space, seed: int | None = None):
    """Every distinct config of the search space once, in the order of the search block."""

    return PointWalk(_points(space, "bruteforce"), seed, shuffle=False)


@SAMPLERS.register("cmaes")
def cmaes(
    space,
    seed: int | None = None,
    sigma0: float | None = None,
    startup_trials: int = 1,
    restart_strategy: Literal["none", "ipop", "bipop"] = "none",
):

    try:
        import cmaes as _  # noqa: F401
    except ImportError:
        raise ValueError("sampler cmaes needs the 'cmaes' package: pip install 'tunekit[samplers]'") from None
    return optuna.samplers.CmaEsSampler(
        seed=seed,
        sigma0=sigma0,
        n_startup_trials=startup_trials,
        restart_strategy=None if restart_strategy == "none" else restart_strategy,
    )


@SAMPLERS.register("gp")
def gp(space, seed: int | None = None, startup_trials: int = 10):
    """Gaussian-process Bayesian optimization (needs scipy; best under ~200 trials)."""

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials)


@SAMPLERS.register("qmc")
def qmc(space, seed: int | None = None, qmc_type: Literal["sobol", "halton"] = "sobol", scramble: bool = True):

    return optuna.samplers.QMCSampler(seed=seed, qmc_type=qmc_type, scramble=scramble)


@SAMPLERS.register("nsga2")
def nsga2(space, seed: int | None = None, population_size: int = 50):

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)


@PRUNERS.register("none")
def none():

    return optuna.pruners.NopPruner()


@PRUNERS.register("median")
def median(startup_trials: int = 5, warmup_epochs: int = 3, interval: int = 1):
    """Stop a trial whose metric is worse than the median of earlier trials at the same epoch."""

    return optuna.pruners.MedianPruner(
        n_startup_trials=startup_trials, n_warmup_steps=_steps(warmup_epochs), interval_steps=interval
    )


@PRUNERS.register("percentile")
def percentile(percentile: float = 25.0, startup_trials: int = 5, warmup_epochs: int = 3, interval: int = 1):

    return optuna.pruners.PercentilePruner(
        percentile, n_startup_trials=startup_trials, n_warmup_steps=_steps(warmup_epochs), interval_steps=interval
    )


@PRUNERS.register("successive_halving")
def successive_halving(
    min_resource: int | Literal["auto"] = "auto", reduction_factor: int = 4, min_early_stopping_rate: int = 0
):

    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min_resource, reduction_factor=reduction_factor, min_early_stopping_rate=min_early_stopping_rate
    )


@PRUNERS.register("hyperband")
def hyperband(min_resource: int = 1, max_resource: int | Literal["auto"] = "auto", reduction_factor: int = 3):

    return optuna.pruners.HyperbandPruner(
        min_resource=min_resource, max_resource=max_resource, reduction_factor=reduction_factor
    )


@PRUNERS.register("threshold")
def threshold(lower: float | None = None, upper: float | None = None, warmup_epochs: int = 0):
    """Stop a trial whose metric leaves [lower, upper]."""

    if lower is None and upper is None:
        raise ValueError("give lower and/or upper, e.g. {name: threshold, lower: 0.5}")
    return optuna.pruners.ThresholdPruner(lower=lower, upper=upper, n_warmup_steps=_steps(warmup_epochs))


@PRUNERS.register("patient")
def patient(patience: int = 3, min_delta: float = 0.0, wrapped: Literal["none", "median"] = "median"):
    """Wait `patience` epochs without improvement before letting the wrapped pruner decide."""

    inner = optuna.pruners.MedianPruner() if wrapped == "median" else None
    return optuna.pruners.PatientPruner(inner, patience=patience, min_delta=min_delta)


def run_seed(seed: int | None, history: int, worker: int) -> int | None:
    """The sampler seed of one run of one worker. A sampler's random state lives in its process, so
    a rerun seeded like the first run replays the first run's draws (continuing a 4-trial study to 8
    re-ran trials 0-3's params), and identically seeded workers draw identical trials. Mixing in how
    many trials the study already holds and the worker's index gives every run and worker its own
    draws, while the same commands on the same study still draw the same trials."""
    if seed is None:
        return None
    if history == 0 and worker == 0:
        return seed  # a new study's first run draws what the config's seed has always drawn
    return int(np.random.SeedSequence([seed, history, worker]).generate_state(1)[0] % (2**31 - 1))


def build_sampler_and_pruner(config, space, worker: int = 0, history: int = 0):
    """Construct both from the config; a value their constructors reject is a config error at its key.
    `worker` (its index) and `history` (trials already in the study) vary the sampler seed: run_seed."""

    # Several of these are stable in practice but still flagged experimental by Optuna.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    built, problems = [], []
    for key, registry, part, extra in (
        ("study.sampler", SAMPLERS, config.sampler, {"seed": config.seed}),
        ("study.pruner", PRUNERS, config.pruner, {}),
    ):
        args = {**extra, **part.args}
        if registry is SAMPLERS:
            args["seed"] = run_seed(args.get("seed"), history, worker)
        try:
            built.append(registry.get(part.name)(*([space] if registry is SAMPLERS else []), **args))
        except (TypeError, ValueError) as exc:
            problems.append(Problem(key, f"{part.name}: {exc}"))
    if problems:
        raise ConfigError(problems, config.source)
    return built[0], built[1]
