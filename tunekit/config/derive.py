"""A trial's concrete config, derived from its study's base config and its params, not stored per trial.

A trial used to carry a full copy of its config in the journal (~0.8 KB a trial, most of a study's
journal). Everything in that copy follows from the config the study ran with (stored once per
version as the study attribute `tunekit.base.<key>`, search block included) and the trial's
params; the trial records, inside its `result` attribute, only which base it ran with and which base
arguments its component switch dropped (`config_from`: {"base": key, "drop": [...]}), so that
deriving it back needs no component registry (the report never imports torch). A trial cut off
before it ended (interrupted, its worker killed) has no result, so no derived config: it is
queued again, and never a study's best. A base changes when a rerun changes a key
free to change (study.trials, train.device, ...) or widens a range: each version keeps its key.

Studies written before this keep a `config` attribute on each trial: it is preferred when present.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from tunekit.config.paths import set_path
from tunekit.config.space import SearchSpace

BASE_PREFIX = "tunekit.base."  # study attr: one config (search block included) per key
CONFIG_FROM = "config_from"  # in a trial's `result` attr: {"base": key, "drop": [dotted keys]}


def base_key(raw: dict) -> str:
    """A short content key for a config: the same config gets the same key on every machine."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_attr(raw: dict) -> tuple[str, dict]:
    """(study attribute name, value) that records `raw` as a base its trials can derive from."""
    return BASE_PREFIX + base_key(raw), raw


def _set_all(raw: dict, values: dict[str, Any]) -> dict:
    out = copy.deepcopy({k: v for k, v in raw.items() if k != "search"})
    for key, value in values.items():
        set_path(out, key, copy.deepcopy(value))
    return out


def dropped_keys(raw: dict, values: dict[str, Any], concrete: dict) -> list[str]:
    """The base arguments `apply_params` dropped from `concrete` (a component switched: sgd's momentum
    under adam), which `derive` cannot know without the component registry."""
    plain = _set_all(raw, values)
    return [
        f"{section}.{arg}"
        for section, args in plain.items()
        if isinstance(args, dict) and isinstance(concrete.get(section), dict)
        for arg in args
        if arg not in concrete[section]
    ]


def derive(raw: dict, values: dict[str, Any], drop: list[str] = ()) -> dict:
    """The concrete config of a trial with typed `values` on base `raw`: what apply_params made."""
    out = _set_all(raw, values)
    for dotted in drop:
        section, _, arg = dotted.partition(".")
        if isinstance(out.get(section), dict):
            out[section].pop(arg, None)
    return out


def space_of(raw: dict | None) -> SearchSpace:
    """The search space of a base (empty when it has none), to type a trial's params with."""
    search = (raw or {}).get("search")
    return SearchSpace(SearchSpace.parse_entries(search)[0] if isinstance(search, dict) else [])


def typed_values(raw: dict | None, optuna_params: dict[str, Any], space: SearchSpace | None = None) -> dict[str, Any]:
    """A trial's params with the values the YAML gave them: a list choice (`model.hidden: [256, 256]`)
    is stored by Optuna as its JSON text; the base's search block holds the value itself."""
    return (space or space_of(raw)).values_from(optuna_params)


def trial_config(study_attrs: dict, trial) -> dict | None:
    """The concrete config `trial` trained: its stored copy (studies from before derivation), else
    derived from the base it recorded. None for a trial that recorded neither (it never started)."""
    attrs = trial.user_attrs
    stored = attrs.get("config")
    if isinstance(stored, dict):
        return stored
    source = (attrs.get("result") or {}).get(CONFIG_FROM)
    if not isinstance(source, dict):
        return None
    raw = study_attrs.get(BASE_PREFIX + str(source.get("base")))
    if not isinstance(raw, dict):
        return None
    return derive(raw, typed_values(raw, trial.params), source.get("drop") or [])


def any_base(study_attrs: dict) -> dict | None:
    """One base of the study (any: their search choices cannot differ), to type params with."""
    for key, value in study_attrs.items():
        if key.startswith(BASE_PREFIX) and isinstance(value, dict):
            return value
    return None
