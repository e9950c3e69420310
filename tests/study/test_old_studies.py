"""A study written before configs were derived (each trial stored a `config` copy, and the study no
`tunekit.base.<key>`) still gives its best trial's config to `train --best`, best.yaml and the
report, and a resumed old study mixes both kinds of trial."""

from __future__ import annotations

import json

import optuna
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tests.conftest import config_from
from tunekit.config.derive import BASE_PREFIX, base_attr, base_key
from tunekit.config.paths import apply_params
from tunekit.report.summary import summarize
from tunekit.runs import StudyDir
from tunekit.study.retrain import best_config

OLD = """\
name: old
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 1, batch_size: 32}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  model.hidden: {choices: [[16], [8, 8]]}
"""

LR = optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)
HIDDEN = optuna.distributions.CategoricalDistribution(["[16]", "[8, 8]"])


def _old_study(runs, trials):
    study_dir = StudyDir(runs, "old")
    study_dir.path.mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(study_dir.path / "optuna.journal")))
    study = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    raw = config_from(OLD, buildable=False).raw
    study.set_user_attr("tunekit.base", {k: v for k, v in raw.items() if k != "search"})
    study.set_user_attr("tunekit.metric", "val_accuracy")
    for value, lr, hidden in trials:
        made = apply_params(raw, {"optimizer.lr": lr, "model.hidden": hidden})
        study.add_trial(
            optuna.trial.create_trial(
                params={"optimizer.lr": lr, "model.hidden": json.dumps(hidden)},
                distributions={"optimizer.lr": LR, "model.hidden": HIDDEN},
                value=value,
                user_attrs={"config": made, "result": {"duration_s": 0.1}},
            )
        )
    return study_dir, study, raw


def test_an_old_study_gives_its_stored_copies(tmp_path):
    study_dir, study, raw = _old_study(tmp_path / "runs", [(0.5, 0.01, [16]), (0.9, 0.05, [8, 8])])
    assert not [k for k in study.user_attrs if k.startswith(BASE_PREFIX)]
    expected = apply_params(raw, {"optimizer.lr": 0.05, "model.hidden": [8, 8]})
    config, number, _ = best_config(study_dir)
    assert number == 1 and config.raw.get("optimizer") == expected["optimizer"]
    assert config.raw["model"]["hidden"] == [8, 8]
    assert yaml.safe_load(study_dir.best_yaml.read_text()) == expected
    summary = summarize(study, "journal")
    assert summary["best"]["config"] == expected
    assert summary["best"]["params"] == {"optimizer.lr": 0.05, "model.hidden": [8, 8]}


def test_a_resumed_old_study_mixes_stored_and_derived_trials(tmp_path):
    study_dir, study, raw = _old_study(tmp_path / "runs", [(0.5, 0.01, [16])])
    # What a rerun with this tunekit adds: its base, and trials that record it instead of a copy.
    key, value = base_attr(raw)
    study.set_user_attr(key, value)
    study.add_trial(
        optuna.trial.create_trial(
            params={"optimizer.lr": 0.02, "model.hidden": "[8, 8]"},
            distributions={"optimizer.lr": LR, "model.hidden": HIDDEN},
            value=0.95,
            user_attrs={"result": {"duration_s": 0.1, "config_from": {"base": base_key(raw)}}},
        )
    )
    summary = summarize(study, "journal")
    assert summary["best"]["number"] == 1
    assert summary["best"]["config"] == apply_params(raw, {"optimizer.lr": 0.02, "model.hidden": [8, 8]})
    assert [t["params"]["model.hidden"] for t in summary["trials"]] == [[16], [8, 8]]
    config, number, _ = best_config(study_dir)
    assert number == 1 and config.raw["model"]["hidden"] == [8, 8] and config.raw["optimizer"]["lr"] == 0.02
