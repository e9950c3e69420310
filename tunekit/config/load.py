"""From a YAML file (plus `--set` overrides) to a validated Config, or one error listing every problem."""

from __future__ import annotations

import copy
from typing import Any

from tunekit.config.sections import SECTIONS, Config, PluginRefused, accepted_args, check_sections
from tunekit.config.yaml_io import Document, parse_scalar, read_yaml_file
from tunekit.errors import ConfigError, Problem, UsageError
from tunekit.registry import UnknownName


def get_path(raw: dict, dotted: str, default: Any = None) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(raw: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {} if node.get(part) is None else node[part]
            if not isinstance(node[part], dict):
                raise KeyError(dotted)
        node = node[part]
    node[parts[-1]] = value


def apply_params(raw: dict, params: dict[str, Any]) -> dict:
    """A copy of `raw` with dotted `params` set, minus the `search:` block: a concrete, runnable config.

    When a param switches a component (optimizer.name: sgd -> adam), base arguments the new
    component does not take (momentum) are dropped: they belonged to the component they came with.
    """
    out = copy.deepcopy({k: v for k, v in raw.items() if k != "search"})
    for key, value in params.items():
        set_path(out, key, copy.deepcopy(value))
    for section, spec in SECTIONS.items():
        switch = f"{section}.{spec.name_key}"
        if switch not in params or not isinstance(out.get(section), dict):
            continue
        if params[switch] == get_path(raw, switch):
            continue
        try:
            keep = set(accepted_args(section, params[switch])) | set(spec.common.model_fields) | {spec.name_key}
        except (UnknownName, TypeError, PluginRefused):
            continue  # reported by validation
        for arg in list(out[section]):
            if arg not in keep and f"{section}.{arg}" not in params:
                del out[section][arg]
    return out


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
            raise UsageError(f"--set {key}: value '{text}' is not valid YAML", "quote strings with spaces or colons") from None
    return out


def validate_document(doc: Document, overrides: dict[str, Any] | None = None) -> Config:
    """Check every section and the search space; raise one ConfigError carrying every problem."""
    from tunekit.config.space import SearchSpace  # space builds on this module's helpers

    raw = copy.deepcopy(doc.data)
    for key, value in (overrides or {}).items():
        try:
            set_path(raw, key, value)
        except KeyError:
            raise ConfigError([Problem(key, "--set addresses a key inside a value that is not a mapping")], doc.source) from None
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
