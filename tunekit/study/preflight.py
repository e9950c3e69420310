"""Everything about a config that can be known without running a study: `tunekit validate`
and `tunekit search --dry-run`. Nothing here writes a file."""

from __future__ import annotations

import time
from typing import Any

import optuna
import torch

from tunekit.components.samplers import build_sampler_and_pruner
from tunekit.config.load import ConfigFile, in_file_order, load_config, without_keys
from tunekit.config.paths import apply_params
from tunekit.config.sections import Config, check_sections
from tunekit.config.space import SearchSpace
from tunekit.errors import ConfigError, Problem, TunekitError
from tunekit.train.batches import rows_per_batch
from tunekit.train.build import build_checked, build_run, corner_problems, resolve_device
from tunekit.train.vectorized import population_problems


def load_checked(path: str | ConfigFile, overrides: list[str] | None = None) -> Config:
    """`load_config`, and when the file has problems, also what torch and the data would refuse
    in the rest of it: every problem of every stage in one error, in file order.

    Without this, a value torch refuses (dropout 1.5, a beta of 1) would only show up once the
    file's other problems were fixed. The later stages run on the config that stood in for the
    faulty one (its faulty keys at their defaults); what they say about those keys is dropped,
    since it would only restate the problem already reported."""
    try:
        return load_config(path, overrides)
    except ConfigError as exc:
        if exc.stand_in is None:
            raise
        later = [p for p in _later_problems(exc.stand_in) if not _restates(p, exc.stand_in_for)]
        if not later:
            raise
        raise ConfigError(in_file_order(exc.problems + later), exc.source) from None


def _later_problems(config: Config) -> list[Problem]:
    """What the build and corner checks say of a config that passed the YAML stages."""
    try:
        config, run = build_checked(config)
    except ConfigError as exc:
        # A metric or loss that does not fit the data stops the build before the components are
        # built: build once more with those keys at their defaults, for what torch says of the rest.
        retry, left = check_sections(without_keys(config.raw, [p.path for p in exc.problems]))
        if retry is None or left:
            return exc.problems
        retry.source, retry.lines = config.source, config.lines
        try:
            build_checked(retry)
        except ConfigError as again:
            return exc.problems + [p for p in again.problems if (p.path, p.message) not in _said(exc.problems)]
        except TunekitError:
            pass
        return exc.problems
    except TunekitError:
        return []  # missing data file and the like: reported on its own once the config is clean
    space, problems = SearchSpace.parse(config)
    if not problems:
        return corner_problems(config, space, run.split) or population_problems(config, space, run)
    # The entries that are sound, and whose conditions name sound ones, still get their corners tried.
    bad = {p.path for p in problems}
    sound = [
        param
        for param in space
        if f"search.{param.key}" not in bad and not any(f"search.{k}" in bad for k in (param.when or {}))
    ]
    try:
        return corner_problems(config, SearchSpace(sound), run.split)
    except TunekitError:
        return []


def _said(problems: list[Problem]) -> set[tuple[str, str]]:
    return {(p.path, p.message) for p in problems}


def _restates(problem: Problem, reported: list[str]) -> bool:
    return any(problem.path == path or problem.path.startswith(path + ".") for path in reported if path)


def sample_trial_config(config: Config, space) -> dict[str, Any]:
    """One concrete trial config, as the study would draw it (random sampler, the config's seed)."""

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.seed))
    return apply_params(config.raw, space.sample(study.ask()))


def one_step(config: Config, device: str | None = None) -> dict[str, Any]:
    """Forward, backward and one optimizer step on one training batch of the base config."""

    run = build_run(config, resolve_device(device or config.train.device), config.seed)
    bs = rows_per_batch(len(run.split.X_train), config.train.batch_size)
    xb, yb = run.split.X_train[:bs], run.split.y_train[:bs]
    started = time.perf_counter()
    run.model.train()
    loss = run.loss_fn(run.model(xb).float(), yb)
    run.optimizer.zero_grad()
    loss.backward()
    run.optimizer.step()
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    return {
        "device": str(run.device),
        "batch": len(xb),
        "loss": float(loss.detach()),
        "seconds": round(time.perf_counter() - started, 4),
    }


def describe_data(config: Config, split) -> dict[str, Any]:
    """What the data turned out to be: the task (given or inferred), classes, features, rows per split."""
    n_features = 1
    for d in split.input_shape:
        n_features *= d
    return {
        "name": config.data.name,
        "path": config.data.args.get("path"),
        "task": split.task,
        "task_from": "data.task" if config.data.args.get("task") else "inferred",
        "n_classes": split.n_classes,
        "n_features": n_features,
        "feature_columns": split.feature_names,
        "rows": {"train": len(split.X_train), "val": len(split.X_val), "test": len(split.X_test)},
    }


def preflight(config: Config, *, step: bool = False, device: str | None = None) -> dict[str, Any]:
    """Check everything (data, components, space, sampler, pruner) and describe what would run."""

    config, run = build_checked(config)
    space, _ = SearchSpace.parse(config)
    problems = corner_problems(config, space, run.split) or population_problems(config, space, run)
    if problems:
        raise ConfigError(problems, config.source)
    build_sampler_and_pruner(config, space)
    info: dict[str, Any] = {
        "valid": True,
        "metric": config.study.metric,
        "direction": config.study.direction,
        "params": sum(p.numel() for p in run.model.parameters()),
        "space": [{"key": p.key, "type": p.kind, "range": p.describe()} for p in space],
        "space_size": space.size(),
        "sample": sample_trial_config(config, space),
        "data": describe_data(config, run.split),
    }
    if config.study.objectives:
        info["objectives"] = [{"metric": o.metric, "direction": o.direction} for o in config.study.objectives]
    if step:
        info["dry_run"] = one_step(config, device)
    return info
