"""From a YAML file (plus `--set` overrides) to a validated Config, or one error listing every problem."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from typing import Any

from tunekit.config.paths import set_path
from tunekit.config.sections import Config, check_sections
from tunekit.config.space import SearchSpace
from tunekit.config.yaml_io import Document, parse_scalar, read_yaml_file
from tunekit.errors import ConfigError, Problem, UsageError
from tunekit.track.specs import TRACKERS, resolve_target


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set optimizer.lr=3e-4` -> {"optimizer.lr": 0.0003}; values are YAML, like the file."""
    out = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key or any(not part for part in key.split(".")):
            raise UsageError(f"--set expects KEY=VALUE with a dotted key, got '{pair}'", "e.g. --set optimizer.lr=3e-4")
        try:
            out[key] = parse_scalar(text)
        except Exception:
            raise UsageError(
                f"--set {key}: value '{text}' is not valid YAML", "quote strings with spaces or colons"
            ) from None
    return out


# The datasets read from the file `data.path` names (here, not in components.data: no torch at load time).
FILE_DATASETS = ("csv", "npz")


def resolve_data_path(raw: dict[str, Any], base_dir: str) -> None:
    """Make a file dataset's relative `data.path` absolute against `base_dir`, in place.

    Written configs (runs/<study>/config.yaml, each trial's, best.yaml) then name the file itself,
    so `tunekit train runs/<study>/trials/00042/config.yaml` reads the same data from any folder."""
    data = raw.get("data")
    if isinstance(data, dict) and data.get("name") in FILE_DATASETS and isinstance(data.get("path"), str):
        path = os.path.expanduser(data["path"])
        if path:
            data["path"] = os.path.normpath(os.path.join(base_dir, path))


def resolve_tracking_paths(raw: dict[str, Any], base_dir: str) -> None:
    """Make the `tracking:` section's relative folders absolute against `base_dir`, in place (an MLflow
    URI such as sqlite:///mlflow.db stays as MLflow reads it), so trial configs track to the same place."""
    tracking = raw.get("tracking")
    if isinstance(tracking, dict):
        for name in TRACKERS:
            value = tracking.get(name)
            if isinstance(value, str) and value.strip():
                tracking[name] = resolve_target(name, value.strip(), base_dir)


def without_keys(raw: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of `raw` with the keys at `paths` removed: what is left falls back to its defaults."""
    out = copy.deepcopy(raw)
    for path in paths:
        *parents, last = path.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def _stand_in(raw: dict[str, Any], problems: list[Problem]) -> Config | None:
    """A config to check the search block's corners against when the sections have problems: the
    faulty keys left out (their defaults in their place), else each faulty section replaced whole by
    its defaults (the data by a bundled set: corners are checked without loading data). None when
    even that does not stand (a search key switching a broken section, say)."""
    first = without_keys(raw, [p.path for p in problems])
    sections = {p.path.split(".")[0] for p in problems}
    second = {k: v for k, v in first.items() if k not in sections or k == "search"}
    if "data" in sections or "data" not in second:
        second["data"] = {"name": "iris"}
    for candidate in (first, second):
        config, still = check_sections(candidate)
        if config is not None and not still:
            return config
    return None


def _every_problem(raw: dict[str, Any]) -> tuple[Config | None, Config | None, list[Problem]]:
    """Every problem of every stage, each once: the sections, each search entry's own shape, and each
    entry's corners against the config.

    Problems in the sections do not hide the search block's: the corners are checked against a
    stand-in config (`_stand_in`), skipping entries in a section that has problems of its own, since
    those would only restate them. When no stand-in holds, only the entries' own shapes are checked.
    Returns (the config or None, the config the corners were checked against, the problems)."""
    config, problems = check_sections(raw)
    checked = config
    search = raw.get("search")
    if config is None:  # with or without a search block: the later stages check the stand-in too
        checked = _stand_in(raw, problems)
        if checked is None and isinstance(search, dict):
            problems += SearchSpace.parse_entries(search)[1]
    if checked is not None:
        faulty = frozenset(p.path.split(".")[0] for p in problems)
        problems += SearchSpace.parse(checked, faulty)[1]
    return config, checked, _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    unique: dict[tuple, Problem] = {}
    for p in problems:
        unique.setdefault((p.path, p.message), p)
    return list(unique.values())


def in_file_order(problems: list[Problem]) -> list[Problem]:
    """Problems sorted by file line (those with none, from --set or the data, last); stable within a line."""
    return sorted(_unique(problems), key=lambda p: math.inf if p.line is None else p.line)


def validate_document(doc: Document, overrides: dict[str, Any] | None = None, base_dir: str | None = None) -> Config:
    """Check every section and the search space; raise one ConfigError carrying every problem.

    `base_dir`: the folder a relative `data.path` in the document is read from (the config file's
    folder). A `data.path` given by an override is read from the working directory, like any path
    typed in a shell."""

    raw = copy.deepcopy(doc.data)
    overrides = overrides or {}
    for key, value in overrides.items():
        try:
            set_path(raw, key, value)
        except KeyError:
            raise ConfigError(
                [Problem(key, "--set addresses a key inside a value that is not a mapping")], doc.source
            ) from None
        doc.lines.pop(key, None)  # no file line applies to an override
    tracking_dir = base_dir
    if any(k == "tracking" or k.startswith("tracking.") for k in overrides):
        tracking_dir = os.getcwd()
    if "data" in overrides or "data.path" in overrides:
        base_dir = os.getcwd()
    if base_dir is not None:
        resolve_data_path(raw, base_dir)
    if tracking_dir is not None:
        resolve_tracking_paths(raw, tracking_dir)
    config, checked, problems = _every_problem(raw)
    faulty_paths = [p.path for p in problems]  # before the parse's own (duplicates), which leave no key faulty
    problems = doc.problems + problems
    if problems:
        for p in problems:
            given = next((k for k in overrides if p.path == k or p.path.startswith(k + ".")), None)
            if given is not None:  # the value came from the command line: no file line applies
                p.origin, p.line = f"--set {given}={_shown(overrides[given])}", None
            elif p.line is None:
                p.line = doc.line_of(p.path)
        error = ConfigError(in_file_order(problems), doc.source)
        # The later stages (torch's own checks, on real data) can still look at what stood in, so
        # their problems are reported with these rather than after these are fixed.
        if checked is not None:
            error.stand_in, error.stand_in_for = _with_lines(checked, doc, raw), faulty_paths
        raise error
    return _with_lines(config, doc, raw)


def _with_lines(config: Config, doc: Document, raw: dict[str, Any]) -> Config:
    config.source = doc.source
    # For the checks that run later, on real data (tunekit.train.build.corner_problems).
    keys = [*(f"search.{k}" for k in config.search), *(str(k) for k in raw if k != "search")]
    keys += [f"{k}.{sub}" for k in raw if k != "search" and isinstance(raw[k], dict) for sub in raw[k]]
    config.lines = {k: doc.line_of(k) for k in keys if doc.line_of(k) is not None}
    return config


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:60] + "..."


@dataclass(frozen=True)
class ConfigFile:
    """A config file as read: its document, and the folder a relative `data.path` in it is read
    from (the file's own folder; the working directory for stdin)."""

    doc: Document
    base_dir: str


def read_config(path: str) -> ConfigFile:
    """Read and parse a config file (`-`: stdin); a missing or malformed file raises here."""
    base_dir = os.getcwd() if path == "-" else os.path.dirname(os.path.abspath(path))
    return ConfigFile(read_yaml_file(path), base_dir)


def declared_name(file: ConfigFile, overrides: list[str] | None) -> str | None:
    """The study name the file (or `--set name=...`) gives, read before validation; None if none or not a name."""
    name = parse_overrides(overrides or []).get(
        "name", file.doc.data.get("name") if isinstance(file.doc.data, dict) else None
    )
    return name if isinstance(name, str) and name else None


def load_config(path: str | ConfigFile, overrides: list[str] | None = None) -> Config:
    """A config file (a path, `-` for stdin, or one already read) plus `--set` overrides."""
    file = path if isinstance(path, ConfigFile) else read_config(path)
    return validate_document(file.doc, parse_overrides(overrides or []), file.base_dir)
