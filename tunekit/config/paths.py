"""Dotted paths into a raw config (`optimizer.lr`), and applying a trial's values to make a concrete config."""

from __future__ import annotations

import copy
from typing import Any

from tunekit.config.sections import SECTIONS, PluginRefused, accepted_args
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
