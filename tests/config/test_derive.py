"""A trial's concrete config, derived from its study's base and its params (tunekit.config.derive):
the same config apply_params made when the trial ran, for plain values, list choices, component
switches that drop base arguments, and old studies that stored a copy per trial."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import config_from
from tunekit.config.derive import (
    BASE_PREFIX,
    CONFIG_FROM,
    base_attr,
    base_key,
    derive,
    dropped_keys,
    space_of,
    trial_config,
)
from tunekit.config.paths import apply_params

SWITCHING = """\
name: sw
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: sgd, lr: 0.01, momentum: 0.9, nesterov: true}
train: {epochs: 1, batch_size: 32}
search:
  optimizer.name: {choices: [sgd, adam]}
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  model.hidden: {choices: [[16], [32, 32]]}
"""


@pytest.fixture(scope="module")
def base() -> dict:
    return config_from(SWITCHING, buildable=False).raw


@pytest.mark.parametrize(
    "values",
    [
        {"optimizer.name": "sgd", "optimizer.lr": 0.05, "model.hidden": [16]},
        {"optimizer.name": "adam", "optimizer.lr": 0.002, "model.hidden": [32, 32]},  # drops momentum, nesterov
        {},
    ],
)
def test_derive_with_the_dropped_keys_gives_what_apply_params_made(base, values):
    made = apply_params(base, values)
    drop = dropped_keys(base, values, made)
    assert derive(base, values, drop) == made
    if values.get("optimizer.name") == "adam":
        assert sorted(drop) == ["optimizer.momentum", "optimizer.nesterov"]
    else:
        assert drop == []


def _trial(params: dict, user_attrs: dict, base: dict) -> optuna.trial.FrozenTrial:
    space = space_of(base)
    distributions = {}
    for key in params:
        p = space.get(key)
        distributions[key] = (
            optuna.distributions.CategoricalDistribution(p.labels)
            if p.kind == "categorical"
            else optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        )
    return optuna.trial.create_trial(params=params, distributions=distributions, value=0.5, user_attrs=user_attrs)


def test_a_trial_derives_its_config_from_the_base_it_recorded(base):
    # Optuna holds the list choice as its JSON text; the derived config has the list.
    values = {"optimizer.name": "adam", "optimizer.lr": 0.002, "model.hidden": [32, 32]}
    made = apply_params(base, values)
    stored = {"optimizer.name": "adam", "optimizer.lr": 0.002, "model.hidden": "[32, 32]"}
    source = {"base": base_key(base), "drop": dropped_keys(base, values, made)}
    trial = _trial(stored, {"result": {"duration_s": 0.1, CONFIG_FROM: source}}, base)
    key, value = base_attr(base)
    assert trial_config({key: value}, trial) == made


def test_each_base_version_gives_its_own_trials_their_config(base):
    # A rerun that changed a key free to change (study.trials here) records a second base; the
    # earlier trials keep theirs.
    later = {**base, "study": {**base.get("study", {}), "trials": 99}}
    attrs = dict([base_attr(base), base_attr(later)])
    assert len(attrs) == 2
    values = {"optimizer.name": "sgd", "optimizer.lr": 0.05, "model.hidden": [16]}
    params = {**values, "model.hidden": "[16]"}
    early = _trial(params, {"result": {CONFIG_FROM: {"base": base_key(base)}}}, base)
    late = _trial(params, {"result": {CONFIG_FROM: {"base": base_key(later)}}}, base)
    assert trial_config(attrs, early) == apply_params(base, values)
    assert trial_config(attrs, late) == apply_params(later, values)
    assert (
        trial_config(attrs, late)["study"]["trials"]
        == 99
        != (trial_config(attrs, early).get("study") or {}).get("trials")
    )


def test_a_stored_copy_from_an_older_study_is_preferred(base):
    copy = {"name": "old", "optimizer": {"name": "sgd", "lr": 0.03}}
    trial = _trial({"optimizer.lr": 0.03}, {"config": copy}, base)
    assert trial_config({}, trial) == copy
    assert trial_config(dict([base_attr(base)]), trial) == copy


def test_a_trial_with_neither_has_no_config(base):
    assert trial_config(dict([base_attr(base)]), _trial({"optimizer.lr": 0.03}, {}, base)) is None
    missing_base = {"result": {CONFIG_FROM: {"base": "000000000000"}}}
    assert trial_config(dict([base_attr(base)]), _trial({"optimizer.lr": 0.03}, missing_base, base)) is None


def test_the_base_key_follows_the_content_not_the_key_order(base):
    reordered = dict(reversed(list(base.items())))
    assert base_key(reordered) == base_key(base)
    assert base_attr(base)[0] == BASE_PREFIX + base_key(base)
