"""From a validated Config to the objects one training run needs, on real data.

This is where config values meet torch: the dataset is loaded and split, the `auto` loss and
default metric are resolved from the data's task, and every component is constructed. Running
`check_buildable` before a study starts turns every value torch would reject into a config
error with its dotted key, instead of a failed trial an hour in.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from tunekit.components import metrics
from tunekit.components.data import Split, load_split
from tunekit.components.initializers import apply_init
from tunekit.components.losses import LOSSES
from tunekit.components.optimizers import build_optimizer
from tunekit.components.schedules import LRSchedule, build_schedule
from tunekit.config.paths import apply_params
from tunekit.config.sections import SECTIONS, Config, check_sections, lookup
from tunekit.errors import ConfigError, DataError, Problem
from tunekit.registry import did_you_mean
from tunekit.train.batches import rows_per_batch, steps_per_epoch
from tunekit.train.finetune import apply_finetune  # before the optimizer: frozen params must stay out of it
from tunekit.train.threads import default_threads


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DataError(
                f"device '{spec}' is not available: torch sees no CUDA GPU", "use --set train.device=cpu (or auto)"
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DataError(f"device '{spec}' is not available: {torch.cuda.device_count()} GPU(s) visible")
    if spec == "mps" and not torch.backends.mps.is_available():
        raise DataError("device 'mps' is not available", "use --set train.device=cpu")
    return torch.device(spec)


def checked_devices(devices: list[str]) -> list[str]:
    """`--devices` made concrete: `auto` is every visible GPU (else the CPU), and each one must exist
    (an environment error, exit 4, before anything starts)."""
    if devices == ["auto"]:
        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    for d in devices:
        try:
            resolve_device(d)
        except DataError as exc:
            raise DataError(
                f"--devices {','.join(devices)}: {exc.message}", "use --devices cpu, or --devices auto"
            ) from None
    return devices


def load_data(config: Config) -> Split:
    d = config.data
    try:
        return load_split(
            d.name, d.args, d.val_fraction, d.test_fraction, d.standardize, config.seed, loader=lookup("data", d.name)
        )
    except DataError:
        raise
    except ConfigError as exc:  # the data leaves a config key open (data.task)
        exc.source = exc.source or config.source
        raise
    except Exception as exc:  # a loader (a plugin's, too) that fails is a data problem, not a crash
        raise DataError(f"data '{d.name}': {type(exc).__name__}: {exc}") from None


def resolve(config: Config, split: Split) -> Config:
    """Fill in what depends on the data (loss `auto`, the default metric) and check task fit."""
    task = split.task
    params = {}
    if config.loss.name == "auto":
        params["loss.name"] = "cross_entropy" if task == "classification" else "mse"
    objectives = config.study.objectives
    if objectives:
        per_epoch = [o.metric for o in objectives if not metrics.is_trial_metric(o.metric)]
        if config.study.metric is not None and config.study.metric != (per_epoch or [None])[0]:
            raise ConfigError([Problem("study.metric", "give either metric or objectives, not both")], config.source)
        params["study.objectives"] = [
            {"metric": o.metric, "direction": o.direction or metrics.direction_of(o.metric)} for o in objectives
        ]
        # The first per-epoch objective picks each trial's best epoch and drives early stopping.
        metric = per_epoch[0] if per_epoch else metrics.default_metric(task)
        params["study.metric"] = metric
        params["study.direction"] = metrics.direction_of(metric)
    else:
        metric = config.study.metric or metrics.default_metric(task)
        params["study.metric"] = metric
        params["study.direction"] = config.study.direction or metrics.direction_of(metric)
    raw = apply_params(config.raw, params)
    raw["search"] = config.raw.get("search") or {}
    resolved, problems = check_sections(raw)
    problems = list(problems)
    if resolved is not None:
        loss = LOSSES.get(resolved.loss.name)
        if loss.task != task:
            problems.append(
                Problem(
                    "loss.name",
                    f"'{resolved.loss.name}' is a {loss.task} loss but data '{config.data.name}' is {task}",
                    hint="use cross_entropy for classification, mse for regression",
                )
            )
        allowed = metrics.metrics_for(task)
        checks = [
            ("study.metric", metric),
            ("train.early_stopping.metric", resolved.train.early_stopping and resolved.train.early_stopping.metric),
        ]
        checks += [
            (f"study.objectives.{i}.metric", o.metric)
            for i, o in enumerate(objectives or [])
            if not metrics.is_trial_metric(o.metric)
        ]
        for key, name in checks:
            if name and name not in allowed:
                problems.append(
                    Problem(
                        key,
                        f"'{name}' is not a {task} metric",
                        hint=did_you_mean(name, allowed) or f"choose one of: {', '.join(allowed)}",
                    )
                )
    if problems:
        raise ConfigError(problems, config.source)
    resolved.source = config.source
    resolved.lines = config.lines
    return resolved


@dataclass
class Run:
    """Everything one training run needs, built from one concrete config."""

    config: Config
    split: Split
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    loss_fn: Callable
    predict: Callable | None
    device: torch.device
    plain_loss: Callable  # val_loss/test_loss (components.losses.LossSpec.plain)


def _constructed(section: str, build: Callable, source: str | None, keys: Iterable[str] = ()):
    """Call a builder; a ValueError from it (or from torch) is a config problem at `section`, or at
    the key of it the message names (torch says "Invalid beta parameter" of `betas`), so the
    error points at that key's line."""
    try:
        return build()
    except (ValueError, TypeError) as exc:
        message = str(exc).split("\n")[0]
        named = [k for k in keys if k != "name" and re.search(rf"\b{re.escape(k.rstrip('s'))}", message, re.I)]
        if not named and "lr" in keys and "learning rate" in message.lower():  # torch's words for `lr`
            named = ["lr"]
        raise ConfigError([Problem(f"{section}.{named[0]}" if named else section, message)], source) from None


def build_model(config: Config, split: Split) -> nn.Module:
    return build_model_for(config, split.input_shape, split.n_classes)


def build_model_for(config: Config, input_shape: tuple[int, ...], n_classes: int | None) -> nn.Module:
    """The initialized model for inputs of `input_shape` (without the batch) and `n_classes` (None: regression)."""
    loss = LOSSES.get(config.loss.name)
    n_out = _constructed("loss.name", lambda: loss.outputs(n_classes), config.source)
    builder = lookup("model", config.model.name)
    model = _constructed(
        "model", lambda: builder(tuple(input_shape), n_out, **config.model.args), config.source, config.model.args
    )
    if not isinstance(model, nn.Module):
        raise ConfigError(
            [Problem("model.name", f"'{config.model.name}' returned {type(model).__name__}, not a torch.nn.Module")],
            config.source,
        )
    init = config.init
    _constructed("init", lambda: apply_init(model, init.name, init.args, init.bias, init.bias_value), config.source)
    return model


def _optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    opt = config.optimizer
    return _constructed(
        "optimizer",
        lambda: build_optimizer(model, opt.name, opt.args, opt.decay_bias_and_norm),
        config.source,
        opt.args,
    )


def _schedule(config: Config, optimizer: torch.optim.Optimizer, split: Split) -> LRSchedule:
    sched = config.schedule
    return _constructed(
        "schedule",
        lambda: build_schedule(
            optimizer,
            sched.name,
            sched.args,
            sched.warmup_epochs,
            sched.warmup_steps,
            sched.interval,
            config.train.epochs,
            steps_per_epoch(len(split.X_train), config.train.batch_size),
        ),
        config.source,
        sched.args,
    )


def _loss(config: Config) -> Callable:
    spec = LOSSES.get(config.loss.name)
    return _constructed("loss", lambda: spec.build(**config.loss.args), config.source, config.loss.args)


def build_run(config: Config, device: torch.device, seed: int, split: Split | None = None) -> Run:
    """`split`: data already on `device` (a population's members share one copy)."""
    split = split if split is not None else load_data(config).to(device)
    torch.manual_seed(seed)  # the trial's seed fixes its initialization
    model = build_model(config, split)
    if config.train.finetune is not None:
        apply_finetune(model, config.train.finetune, config.source)
    model = model.to(device)
    if channels_last_helps(model, device, config.train.precision):
        model, split = to_channels_last(model, split)
    if config.train.batch_size == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(
            [
                Problem(
                    "train.batch_size",
                    "batch norm needs batches of 2 or more, got 1",
                    hint="use norm: layer or none with batch_size 1",
                )
            ],
            config.source,
        )
    optimizer = _optimizer(config, model)
    schedule = _schedule(config, optimizer, split)
    spec = LOSSES.get(config.loss.name)
    loss_fn = _loss(config)
    if isinstance(loss_fn, nn.Module):
        loss_fn = loss_fn.to(device)
    if split.task == "classification" and spec.predict is not None and "class_weights" in config.loss.args:
        weights = config.loss.args["class_weights"]
        if weights is not None and len(weights) != split.n_classes:
            raise ConfigError(
                [
                    Problem(
                        "loss.class_weights", f"has {len(weights)} entries but the data has {split.n_classes} classes"
                    )
                ],
                config.source,
            )
    return Run(config, split, model, optimizer, schedule, loss_fn, spec.predict, device, spec.plain)


def channels_last_helps(model: nn.Module, device: torch.device, precision: str) -> bool:
    """Convolutions under bf16/fp16 autocast on a CUDA GPU run tensor-core kernels that want NHWC
    ("channels last"); in NCHW every conv pays a layout transpose. In fp32, and on the CPU, NCHW stays."""
    return (
        device.type == "cuda"
        and precision in ("bf16", "fp16")
        and any(isinstance(m, nn.Conv2d) for m in model.modules())
    )


def to_channels_last(model: nn.Module, split: Split) -> tuple[nn.Module, Split]:
    """The model's 4-D weights and the image tensors in NHWC memory order, once, before training;
    batches indexed from them keep the order. Values and shapes are unchanged."""

    def nhwc(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    moved = {k: nhwc(getattr(split, k)) for k in ("X_train", "X_val", "X_test")}
    return model.to(memory_format=torch.channels_last), dataclasses.replace(split, **moved)


def check_buildable(config: Config) -> Config:
    """Load the data and construct every component once, on CPU, before anything is written.

    Returns the resolved config (loss and metric filled in). Raises ConfigError / DataError.
    """
    return build_checked(config)[0]


def build_checked(config: Config) -> tuple[Config, Run]:
    """`check_buildable`, also returning the Run it built (on CPU, with the config's own seed)."""
    split = load_data(config)
    try:
        config = resolve(config, split)
    except ConfigError as exc:  # the metric or loss does not fit the data's task: at its line
        for p in exc.problems:
            p.line = p.line if p.line is not None else config.lines.get(p.path)
        raise
    try:
        run = build_run(config, torch.device("cpu"), config.seed, split=split)
    except ConfigError as exc:
        problems = _every_build_problem(config, split) or exc.problems
        for p in problems:
            p.line = p.line if p.line is not None else config.lines.get(p.path)
        raise ConfigError(problems, config.source) from None
    device = resolve_device(config.train.device)
    if config.train.precision == "fp16" and device.type != "cuda":
        # torch would train fp16 on the CPU in float32 anyway (no GradScaler there): say so instead.
        problem = Problem("train.precision", f"fp16 needs a CUDA device; train.device is {device.type}")
        problem.hint, problem.line = "use bf16 or fp32", config.lines.get("train")
        raise ConfigError([problem], config.source)
    return config, run


def _every_build_problem(config: Config, split: Split) -> list[Problem]:
    """Every component torch refuses, not just the first: each is built on its own, a refused one
    replaced by a plain stand-in (a linear model, SGD) so the ones after it are still tried."""
    problems: list[Problem] = []

    def attempt(build: Callable, stand_in: Callable):
        try:
            return build()
        except ConfigError as exc:
            problems.extend(
                p for p in exc.problems if (p.path, p.message) not in {(q.path, q.message) for q in problems}
            )
            return stand_in()

    def linear() -> nn.Module:
        n_in = 1
        for d in split.input_shape:
            n_in *= d
        return nn.Sequential(nn.Flatten(), nn.Linear(n_in, max(1, split.n_classes or 1)))

    before = len(problems)
    model = attempt(lambda: build_model(config, split), linear)
    if config.train.finetune is not None and len(problems) == before:  # a stand-in model has no checkpoint to match
        try:
            attempt(lambda: apply_finetune(model, config.train.finetune, config.source), lambda: None)
        except DataError:
            pass  # the checkpoint itself is missing: build_run reports it once the config problems are fixed
    optimizer = attempt(lambda: _optimizer(config, model), lambda: torch.optim.SGD(model.parameters(), lr=0.1))
    attempt(lambda: _schedule(config, optimizer, split), lambda: None)
    attempt(lambda: _loss(config), lambda: None)
    if not problems:  # the refusal was one build_run checks beyond the components (batch norm on batches of 1, ...)
        return []
    return problems


def warm_up(config: Config, device_spec: str) -> None:
    """Pay a process's one-time costs before its first trial: torch's lazy imports (the first
    optimizer construction imports torch._dynamo, ~1.5 s), the CUDA context, the data cache.
    Otherwise a spawned worker's first trial takes ~5x its siblings, and that time lands in the
    trial's time_s (and a train_time objective). Best effort: a real problem shows up, and is
    recorded, in the trial itself."""
    try:
        device = resolve_device(device_spec)
        split = load_data(config)
        build_run(resolve(config, split), device, config.seed, split=split.to(device))
    except Exception:
        pass


def copy_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def set_threads(threads: int | None, run: Run | None = None) -> int | None:
    """torch threads for this process: `threads`, else (given the run it trains first) one thread
    for small steps and every core for large ones (train/threads.py). Returns the count set."""
    if not threads and run is not None:
        rows = rows_per_batch(len(run.split.X_train), run.config.train.batch_size)
        threads = default_threads(run.model, run.split.X_train[:rows])
    if threads:
        torch.set_num_threads(threads)
    return threads


def corner_problems(config: Config, space, split: Split) -> list[Problem]:
    """Each search entry's extreme values (low, high, every choice) built for real, on CPU, with the
    base config's data: a value torch itself rejects (a dropout above 1, a negative lr) is a config
    problem of that entry before the first trial, not a failed trial. One problem per entry, the
    first refused value's. `config` is the resolved base config (tunekit.config.space has already
    checked the corners' keys and types; a corner that fails there is not built).

    A value is refused only when no trial could take it: it fails with the other entries at their
    base values and with each other entry moved to each of its own extremes (`nesterov: true`
    needs a momentum, which another entry supplies). An entry in a section whose component is
    searched is built under the first component its `when:` allows."""
    problems = []
    for p in space:
        section = p.key.split(".")[0]
        if section == "data":
            continue  # another split is its trial's to load; built on the base data it would prove nothing
        context = {k: v[0] for k, v in p.when.items()}
        switch = space.get(f"{section}.{SECTIONS[section].name_key}") if section in SECTIONS else None
        if switch is not None and switch.key != p.key and switch.key not in context:
            context[switch.key] = switch.choices[0]
        others = [{}] + [
            {q.key: v} for q in space if q.key != p.key and q.key not in context for v in q.representatives()
        ]
        for value in p.representatives():
            refused = None
            for other in others:
                corner, found = check_sections(apply_params(config.raw, {**other, **context, p.key: value}))
                if corner is None or found:
                    continue  # not a config a trial could have (checked by tunekit.config.space)
                try:
                    build_run(resolve(corner, split), torch.device("cpu"), config.seed, split=split)
                except ConfigError as exc:
                    refused = refused or exc.problems[0]
                    continue
                except DataError:
                    pass  # a data problem of this corner: left to its trial
                refused = None
                break
            if refused is not None:
                detail = refused.message if refused.path in (p.key, section) else f"{refused.path}: {refused.message}"
                where = f"search.{p.key}"
                problems.append(
                    Problem(
                        where,
                        f"value {json.dumps(value)} is refused: {detail}",
                        line=config.lines.get(where),
                        hint=refused.hint,
                    )
                )
                break
    return problems
