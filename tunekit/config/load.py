"""From a YAML file (plus `--set` overrides) to a validated Config, or one error listing every problem."""

from __future__ import annotations

import copy
from typing import Any

from tunekit.config.paths import set_path
from tunekit.config.sections import Config, check_sections
from tunekit.config.space import SearchSpace
from tunekit.config.yaml_io import Document, parse_scalar, read_yaml_file
from tunekit.errors import ConfigError, Problem, UsageError


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


def validate_document(doc: Document, overrides: dict[str, Any] | None = None) -> Config:
    """Check every section and the search space; raise one ConfigError carrying every problem."""

    raw = copy.deepcopy(doc.data)
    for key, value in (overrides or {}).items():
        try:
            set_path(raw, key, value)
        except KeyError:
            raise ConfigError(
                [Problem(key, "--set addresses a key inside a value that is not a mapping")], doc.source
            ) from None
        doc.lines.pop(key, None)  # no file line applies to an override
    config, problems = check_sections(raw)
    if config is not None:
        problems += SearchSpace.parse(config)[1]
    elif isinstance(raw.get("search"), dict):
        problems += SearchSpace.parse_entries(raw["search"])[1]
    if problems:
        for p in problems:
            if p.line is None:
                p.line = doc.line_of(p.path)
        raise ConfigError(problems, doc.source)
    config.source = doc.source
    return config


def load_config(path: str, overrides: list[str] | None = None) -> Config:
    return validate_document(read_yaml_file(path), parse_overrides(overrides or []))
