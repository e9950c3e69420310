"""Samplers and pruners by config name, each a typed function so the config is checked against it.

Names and arguments follow tunekit's vocabulary (`warmup_epochs`, not `n_warmup_steps`): a
pruner's "step" is an epoch here, and the config should say so.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import optuna

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


def _finite(sampler_class):
    """A grid or brute-force sampler that says when it has covered the space instead of calling
    `study.stop()`, which only works inside Optuna's own optimize loop (tunekit asks and tells):
    the worker loop reads `exhausted` after each trial and stops the search there."""

    class Finite(sampler_class):
        exhausted = False
        _replayed = False

        def after_trial(self, study, trial, state, values) -> None:
            study.stop = lambda: setattr(self, "exhausted", True)  # shadows the method on this object only
            try:
                super().after_trial(study, trial, state, values)
            except KeyError:
                pass  # the grid sampler looks up the grid point of a queued trial (the baseline, a retry), which has none
            finally:
                del study.stop

        def covered(self, study) -> bool:
            if hasattr(self, "is_exhausted"):
                return self.exhausted or self.is_exhausted(study)
            if not self._replayed:  # brute force: ask it about the last finished trial once, as a rerun starts
                self._replayed = True
                finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
                if finished:
                    self.after_trial(study, finished[-1], finished[-1].state, finished[-1].values)
            return self.exhausted

    Finite.__name__ = Finite.__qualname__ = sampler_class.__name__
    return Finite


def space_is_finite(sampler) -> bool:
    """Does this sampler walk a finite space point by point (grid, bruteforce)?"""
    return hasattr(sampler, "covered")


def space_covered(sampler, study) -> bool:
    """Has a finite sampler (grid, bruteforce) tried every point of the search space?"""
    return hasattr(sampler, "covered") and sampler.covered(study)


@SAMPLERS.register("grid")
def grid(space, seed: int | None = None):
    """Every combination of the search space's choices and stepped ranges."""

    grid_values = {}
    for p in space:
        if p.size() is None:
            raise ValueError(f"grid needs choices or a step for every entry; search.{p.key} is a continuous range")
        grid_values[p.key] = p.points()
    return _finite(optuna.samplers.GridSampler)(grid_values, seed=seed)


@SAMPLERS.register("bruteforce")
def bruteforce(space, seed: int | None = None):

    return _finite(optuna.samplers.BruteForceSampler)(seed=seed)


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
