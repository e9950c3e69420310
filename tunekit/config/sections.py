"""The typed config: one dataclass per section, and the checks that turn raw YAML into it.

Fixed-shape sections (train, study) are pydantic models. Component sections (data, model,
init, optimizer, schedule, loss) have a few common keys plus the arguments of the component
they name; those arguments are checked against the registered builder's signature, so the
config accepts exactly what the code takes. All types are strict: `epochs: true` is not 1.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from tunekit.errors import Problem, UsageError
from tunekit.registry import Registry, UnknownName, did_you_mean
from tunekit.runs import check_study_name

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class Strict(BaseModel):
    model_config = STRICT


# --- fixed-shape sections -------------------------------------------------------------------


class GradClip(Strict):
    """Clip gradients by global norm (`norm`) or elementwise (`value`) before each step."""

    norm: float | None = Field(None, gt=0)
    value: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.norm is None) == (self.value is None):
            raise ValueError("give exactly one of norm or value, e.g. grad_clip: {norm: 1.0}")
        return self


class EarlyStopping(Strict):
    """Stop a run when `metric` (default: the study metric) has not improved by `min_delta` for `patience` epochs."""

    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    metric: str | None = None


class Finetune(Strict):
    """Start from a tunekit checkpoint; `freeze` lists layer-name prefixes, or an int freezes the first N layers."""

    checkpoint: str
    freeze: list[str] | int = []
    new_head: bool = True


class TrainSection(Strict):
    epochs: int = Field(20, ge=1, le=1_000_000)
    batch_size: int | str = 64  # an int, or "full" for batch gradient descent
    grad_clip: float | GradClip | None = None
    early_stopping: EarlyStopping | None = None
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    finetune: Finetune | None = None
    threads: int | None = Field(None, ge=1, le=1024)

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, v):
        if isinstance(v, str) and v != "full":
            hint = did_you_mean(v, ["full"]) or "use an integer, or 'full' for batch gradient descent"
            raise ValueError(f"must be an integer or 'full', got '{v}' ({hint})")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be >= 1 (1 = stochastic gradient descent) or 'full', got {v}")
        return v

    @field_validator("grad_clip")
    @classmethod
    def _grad_clip(cls, v):
        if isinstance(v, float) and v <= 0:
            raise ValueError(f"must be > 0, got {v}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got '{v}'")
        return v

    @property
    def clip(self) -> GradClip | None:
        return GradClip(norm=self.grad_clip) if isinstance(self.grad_clip, float) else self.grad_clip


class Objective(Strict):
    metric: str
    direction: Literal["maximize", "minimize"] | None = None  # default: from the metric


class HeartbeatSection(Strict):
    """How a worker shows it is alive, and how long without a sign before its trial is taken back."""

    interval: float = Field(15.0, ge=0.1, le=3600)  # seconds between a running trial's heartbeats
    grace: float = Field(120.0, gt=0, le=86400)  # seconds without one before another worker retries it

    @model_validator(mode="after")
    def _grace_covers_beats(self):
        if self.grace < 2 * self.interval:
            raise ValueError("grace must be at least twice the interval, or a slow beat would look like a death")
        return self


class StudySection(Strict):
    metric: str | None = None  # default: val_accuracy (classification) or val_rmse (regression)
    direction: Literal["maximize", "minimize"] | None = None  # default: from the metric
    objectives: list[Objective] | None = None  # several objectives: a Pareto front instead of one best
    trials: int = Field(20, ge=1)
    population: int = Field(1, ge=1)  # trials trained together as one vectorized model (tunekit.train.vectorized)
    # Start small: the first trials alone, then populations of 2, 4, ... up to `population`, so the
    # first result is not held back by a whole population's epochs (false: `population` from the start).
    population_ramp: bool = True
    # A trial whose worker died (killed, OOM-killed by the kernel) is run again at most this many
    # times, then fails with its reason: a config that kills its worker must not block the study.
    max_retries: int = Field(2, ge=0, le=100)
    heartbeat: HeartbeatSection = HeartbeatSection()
    sampler: dict[str, Any] = {}  # checked as components: see STUDY_PARTS
    pruner: dict[str, Any] = {}

    @field_validator("objectives")
    @classmethod
    def _several(cls, v):
        if v is not None and len(v) < 2:
            raise ValueError("list two or more objectives, or use metric/direction for one")
        return v


class TrackingSection(Strict):
    """Experiment tracking, off by default (tunekit.track). A tracker is `true` (its default place) or
    where it writes: MLflow a folder or a tracking URI, TensorBoard a folder. `--track` replaces an entry."""

    mlflow: bool | str | None = None
    tensorboard: bool | str | None = None

    @field_validator("mlflow", "tensorboard")
    @classmethod
    def _somewhere(cls, v):
        if isinstance(v, str) and not v.strip():
            raise ValueError("give a folder or URI, true for the default, or leave it out")
        return v


# --- component sections ------------------------------------------------------------------


class DataCommon(Strict):
    val_fraction: float = Field(0.2, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    standardize: bool = True

    @model_validator(mode="after")
    def _fractions(self):
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1, nothing would be left to train on")
        return self


class ModelCommon(Strict):
    pass


class InitCommon(Strict):
    bias: str = "default"
    bias_value: float = 0.0

    @field_validator("bias")
    @classmethod
    def _known_bias(cls, value: str) -> str:
        names = _builders("tunekit.components.initializers", "BIAS_INITS")().names()
        if value not in names:
            shown = value if len(value) <= 40 else value[:40] + "..."
            hint = did_you_mean(value, names) or f"choose one of: {', '.join(names)}"
            raise ValueError(f"unknown bias init '{shown}' ({hint})")
        return value


class OptimizerCommon(Strict):
    decay_bias_and_norm: bool = False  # by default biases and norm parameters get no weight decay


class ScheduleCommon(Strict):
    warmup_epochs: int = Field(0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    interval: Literal["epoch", "step"] = "epoch"


class LossCommon(Strict):
    pass


@dataclass
class Component:
    """A section that names a registered component: its name, its arguments, and the section's common keys."""

    name: str
    args: dict[str, Any]
    common: BaseModel

    def __getattr__(self, item: str) -> Any:
        # data.val_fraction, schedule.warmup_epochs, ... read through to the common keys.
        if item in ("common", "name", "args"):
            raise AttributeError(item)
        return getattr(self.common, item)


@dataclass
class SectionSpec:
    """How to check one component section: which key names the component, where builders live."""

    section: str
    name_key: str
    default_name: str | None
    common: type[BaseModel]
    builders: Callable[[], Registry]
    builder_of: Callable[[Any], Callable] = lambda entry: entry  # registry entry -> function with the args
    skip: tuple[str, ...] = ()  # builder parameters tunekit fills in itself


def _builders(module: str, attr: str) -> Callable[[], Registry]:
    # Imported on first use: keeps torch out of `tunekit --help`.
    def get() -> Registry:

        return getattr(importlib.import_module(module), attr)

    return get


SECTIONS: dict[str, SectionSpec] = {
    "data": SectionSpec(
        "data", "name", None, DataCommon, _builders("tunekit.components.data", "DATASETS"), skip=("seed",)
    ),
    "model": SectionSpec(
        "model",
        "name",
        "mlp",
        ModelCommon,
        _builders("tunekit.components.models", "MODELS"),
        skip=("input_shape", "n_outputs"),
    ),
    "init": SectionSpec(
        "init",
        "weight",
        "default",
        InitCommon,
        _builders("tunekit.components.initializers", "WEIGHT_INITS"),
        skip=("w", "nonlinearity"),
    ),
    "optimizer": SectionSpec(
        "optimizer",
        "name",
        "adamw",
        OptimizerCommon,
        _builders("tunekit.components.optimizers", "OPTIMIZERS"),
        skip=("params",),
    ),
    "schedule": SectionSpec(
        "schedule", "name", "constant", ScheduleCommon, _builders("tunekit.components.schedules", "SCHEDULES")
    ),
    "loss": SectionSpec(
        "loss",
        "name",
        "auto",
        LossCommon,
        _builders("tunekit.components.losses", "LOSSES"),
        builder_of=lambda spec: spec.build,
    ),
}

STUDY_PARTS = {
    "sampler": SectionSpec(
        "study.sampler", "name", "tpe", Strict, _builders("tunekit.components.samplers", "SAMPLERS"), skip=("space",)
    ),
    "pruner": SectionSpec(
        "study.pruner", "name", "median", Strict, _builders("tunekit.components.samplers", "PRUNERS")
    ),
}

PLUGIN_SECTIONS = ("data", "model")
ALLOWED_PLUGINS: set[str] = set()  # top-level packages the user allowed with --allow-plugin


def allow_plugins(packages: list[str] | None) -> None:
    ALLOWED_PLUGINS.update(packages or [])


class PluginRefused(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def lookup(section: str, name: str) -> Any:
    """A section's registry entry by name; `pkg.module:fn` names user code (data and model only),
    imported only when its package was allowed, because importing runs it."""
    spec = SECTIONS.get(section) or STUDY_PARTS[section.split(".")[-1]]
    if not (section in PLUGIN_SECTIONS and ":" in name):
        return spec.builders().get(name)
    module_name, _, attr = name.partition(":")
    root = module_name.split(".")[0]
    if root not in ALLOWED_PLUGINS:
        raise PluginRefused(
            f"'{name}' is user code, and importing it runs it", f"pass --allow-plugin {root} to allow it"
        )

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # plugins usually sit beside the config, like `python -m` would see them
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error inside user code is reported, not raised
        raise PluginRefused(f"cannot import plugin module '{module_name}': {type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise PluginRefused(f"plugin module '{module_name}' has no function '{attr}'")
    return fn


MAX_SEED = 2**31 - 1
TOP_LEVEL = ["name", "seed", *SECTIONS, "train", "study", "tracking", "search"]


@functools.cache
def _args_model(fn: Callable, skip: tuple[str, ...]) -> type[BaseModel]:
    """A strict pydantic model of a builder's keyword arguments, from its signature and type hints."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, Any)
        default = ... if param.default is param.empty else param.default
        fields[name] = (annotation, default)
    return create_model(f"{fn.__name__}_args", __config__=STRICT, **fields)


def accepted_args(section: str, name: str) -> list[str]:
    spec = SECTIONS[section]
    fn = spec.builder_of(lookup(section, name))
    return list(_args_model(fn, spec.skip).model_fields)


def _format_error(err: dict) -> tuple[str, str | None]:
    """A pydantic error as (message, hint), phrased for a YAML author."""
    msg = err["msg"].removeprefix("Value error, ")
    hint = None
    given = err.get("input")
    if err["type"] == "literal_error":
        options = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        hint = did_you_mean(str(given), options)
        msg = f"'{given}' is not one of: {', '.join(options)}"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] in ("int_type", "float_type", "bool_type", "string_type", "list_type", "dict_type"):
        msg = f"{msg}, got {type(given).__name__} {given!r}"
        if isinstance(given, str) and err["type"] in ("float_type", "int_type") and _numeric(given):
            hint = "write numbers without quotes"  # '0.1' in quotes is a string
    elif err["type"] == "finite_number":
        msg = f"must be a finite number, got {given!r}"
    return msg, hint


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _real_path(raw: Any, loc: tuple, missing: bool) -> list[str]:
    """Keep the parts of a pydantic error location that are real keys in the input.

    Unions add their member type to the location (`batch_size.int`, `grad_clip.GradClip`);
    walking the raw data drops those, leaving the dotted path the user wrote.
    """
    path, node = [], raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif missing and isinstance(node, dict) and part == loc[-1]:
            path.append(str(part))  # a missing required key: name it
            break
        else:
            continue
        path.append(str(part))
    return path


def _pydantic_problems(prefix: str, exc: ValidationError, raw: Any) -> list[Problem]:
    problems = []
    for err in exc.errors():
        parts = _real_path(raw, err["loc"], err["type"] == "missing")
        path = ".".join([prefix, *parts] if prefix else parts)
        msg, hint = _format_error(err)
        problems.append(Problem(path, msg, hint=hint))
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """One message per key. A union (`float | GradClip`) fails once per member: keep the member
    whose type matched the input (its complaint is about the value), not a bare type mismatch."""
    by_path: dict[str, Problem] = {}
    for p in problems:
        kept = by_path.get(p.path)
        if kept is None or (
            kept.message.startswith("Input should be a valid") and not p.message.startswith("Input should be a valid")
        ):
            by_path[p.path] = p
    return list(by_path.values())


def check_component(spec: SectionSpec, raw: Any) -> tuple[Component | None, list[Problem]]:
    section = spec.section
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [
            Problem(
                section,
                f"must be a mapping, got {type(raw).__name__}",
                hint=f"e.g. {section}: {{{spec.name_key}: ...}}",
            )
        ]
    raw = dict(raw)
    name = raw.pop(spec.name_key, spec.default_name)
    if name is None:
        return None, [Problem(f"{section}.{spec.name_key}", "required key is missing")]
    common_keys = set(spec.common.model_fields)
    common_raw = {k: v for k, v in raw.items() if k in common_keys}
    arg_raw = {k: v for k, v in raw.items() if k not in common_keys}
    problems: list[Problem] = []
    try:
        common = spec.common(**common_raw)
    except ValidationError as exc:
        problems += _pydantic_problems(section, exc, common_raw)
        common = spec.common.model_construct()

    if section == "loss" and name == "auto":  # filled in once the data's task is known
        return Component(name, arg_raw, common), problems
    if not isinstance(name, str):
        return None, problems + [Problem(f"{section}.{spec.name_key}", f"must be a name, got {name!r}")]
    try:
        entry = lookup(section, name)
    except UnknownName as exc:
        return None, problems + [Problem(f"{section}.{spec.name_key}", str(exc), hint=exc.hint)]
    except PluginRefused as exc:
        return None, problems + [Problem(f"{section}.{spec.name_key}", str(exc), hint=exc.hint)]
    model = _args_model(spec.builder_of(entry), spec.skip)
    allowed = list(model.model_fields)
    for key in arg_raw:
        if key not in allowed:
            options = allowed + sorted(common_keys)
            hint = did_you_mean(key, options) or (
                f"{section} '{name}' takes: {', '.join(options)}"
                if options
                else f"{section} '{name}' takes no arguments"
            )
            problems.append(Problem(f"{section}.{key}", f"unknown key for {section} '{name}'", hint=hint))
    try:
        validated = model(**{k: v for k, v in arg_raw.items() if k in allowed})
    except ValidationError as exc:
        return None, problems + _pydantic_problems(section, exc, arg_raw)
    args = {k: getattr(validated, k) for k in arg_raw if k in allowed}
    return Component(name, args, common), problems


def check_model(prefix: str, model: type[BaseModel], raw: Any) -> tuple[BaseModel | None, list[Problem]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [Problem(prefix, f"must be a mapping, got {type(raw).__name__}")]
    problems = []
    for key in raw:
        if key not in model.model_fields:
            hint = did_you_mean(key, list(model.model_fields)) or f"{prefix} takes: {', '.join(model.model_fields)}"
            problems.append(Problem(f"{prefix}.{key}", f"unknown key in {prefix}", hint=hint))
    try:
        return model(**{k: v for k, v in raw.items() if k in model.model_fields}), problems
    except ValidationError as exc:
        return None, problems + _pydantic_problems(prefix, exc, raw)


@dataclass
class Config:
    """A validated config. `raw` is the plain data it came from, which is what gets written to disk."""

    name: str | None
    seed: int
    data: Component
    model: Component
    init: Component
    optimizer: Component
    schedule: Component
    loss: Component
    train: TrainSection
    study: StudySection
    sampler: Component
    pruner: Component
    search: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    source: str | None = None
    lines: dict[str, int] = field(default_factory=dict, repr=False)  # file line of each search entry, where known


def check_sections(raw: dict[str, Any]) -> tuple[Config | None, list[Problem]]:
    """Validate every section of a raw config dict; returns every problem found, not just the first."""
    problems: list[Problem] = []
    for key in raw:
        if key not in TOP_LEVEL:
            problems.append(
                Problem(
                    str(key),
                    "unknown section",
                    hint=did_you_mean(str(key), TOP_LEVEL) or f"sections: {', '.join(TOP_LEVEL)}",
                )
            )
    if "data" not in raw:
        problems.append(Problem("data", "required section is missing", hint="e.g. data: {name: digits}"))

    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        problems.append(Problem("name", f"must be a string, got {name!r}"))
    elif name is not None:
        try:
            check_study_name(name)  # the study folder is named after it: in the file, so exit 3 like any key
        except UsageError as exc:
            problems.append(Problem("name", exc.message, hint=exc.hint))
    seed = raw.get("seed", 0)
    if type(seed) is not int or seed < 0:
        problems.append(Problem("seed", f"must be a non-negative integer, got {str(seed)[:40]}"))
    elif seed > MAX_SEED:  # numpy and torch generators take 32 bits (torch 64; trial seeds add to it)
        problems.append(Problem("seed", f"must be at most {MAX_SEED}, got {str(seed)[:40]}"))

    parts: dict[str, Any] = {}
    for section, spec in SECTIONS.items():
        if section == "data" and "data" not in raw:
            continue
        parts[section], found = check_component(spec, raw.get(section))
        problems += found
    parts["train"], found = check_model("train", TrainSection, raw.get("train"))
    problems += found
    parts["study"], found = check_model("study", StudySection, raw.get("study"))
    problems += found
    parts["tracking"], found = check_model("tracking", TrackingSection, raw.get("tracking"))
    problems += found
    study_raw = raw.get("study") if isinstance(raw.get("study"), dict) else {}
    for key, spec in STUDY_PARTS.items():
        parts[key], found = check_component(spec, study_raw.get(key))
        problems += found
    search = raw.get("search") or {}
    if not isinstance(search, dict):
        problems.append(Problem("search", f"must be a mapping of dotted keys to ranges, got {type(search).__name__}"))
        search = {}

    if problems or any(v is None for v in parts.values()):
        return None, problems
    return Config(name=name, seed=seed, search=search, raw=raw, **parts), problems


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
