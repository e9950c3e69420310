"""A study's journal holds no copy of each trial's config (tunekit.config.derive), yet every command
that needs one gives the config the trial trained, exactly as in its trials/NNNNN/config.yaml:
`report --json`, best.yaml, `train --best`, after a resume that changed a free key and in a
warm-started study, and Optuna's own CLI still reads the study. Driven through the real CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tunekit.config.derive import trial_config

TUNEKIT = [sys.executable, "-m", "tunekit"]

# sgd's momentum and nesterov are dropped when a trial switches to adam; hidden is a list choice.
SWITCHING = """\
name: derived
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true}
train: {epochs: 2, batch_size: 32}
study:
  trials: 5
  sampler: {name: random, seed: 1}
  pruner: {name: none}
search:
  optimizer.name: {choices: [sgd, adam]}
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  model.hidden: {choices: [[16], [8, 8]]}
"""


def tunekit(*args, cwd=None):
    done = subprocess.run(
        [*TUNEKIT, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    return done


def _study(study_dir: Path):
    storage = JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    return optuna.load_study(study_name=study_dir.name, storage=storage)


def _trial_yaml(study_dir: Path, number: int) -> dict:
    return yaml.safe_load((study_dir / "trials" / f"{number:05d}" / "config.yaml").read_text())


def _every_trial_derives_its_own(study_dir: Path) -> int:
    study = _study(study_dir)
    done = [t for t in study.trials if t.state.is_finished()]
    for t in done:
        assert trial_config(study.user_attrs, t) == _trial_yaml(study_dir, t.number), t.number
    return len(done)


def _tunekit_bytes_per_trial(journal: Path, trials: int) -> tuple[float, float]:
    """(the trials' journal lines, tunekit's own among them) per trial; the study's own lines (its
    base config, space, ...) are written once, not per trial."""
    lines = [(json.loads(line)["op_code"], len(line)) for line in journal.read_bytes().splitlines(keepends=True)]
    per_trial = sum(n for op, n in lines if op >= 4)  # create, params, state, attributes of trials
    own = sum(n for op, n in lines if op == 8)  # trial user attributes: tunekit's
    return per_trial / trials, own / trials


def test_search_then_train_best_and_report_give_the_trained_config(tmp_path):
    config = tmp_path / "derived.yaml"
    config.write_text(SWITCHING)
    runs = tmp_path / "runs"
    tunekit("search", config, "--runs", runs, "-q")
    study_dir = runs / "derived"
    journal = study_dir / "optuna.journal"

    # No trial carries a copy of its config; what tunekit adds per trial is a few hundred bytes.
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert not [r for r in records if r["op_code"] == 8 and "config" in r["user_attr"]]
    total, own = _tunekit_bytes_per_trial(journal, 5)
    assert own <= 700, own  # was ~1.2 KB with the copy
    assert total <= 1024 + 3 * 300, total  # the rest is Optuna's own lines, ~280 bytes per param
    switched = [t for t in _study(study_dir).trials if t.params["optimizer.name"] == "adam"]
    assert switched, "the seed must draw a trial that switches to adam"
    assert _every_trial_derives_its_own(study_dir) == 5
    for t in switched:
        assert "momentum" not in _trial_yaml(study_dir, t.number)["optimizer"]

    summary = json.loads(tunekit("report", "derived", "--runs", runs, "--format", "json").stdout)
    best = summary["best"]
    expected = _trial_yaml(study_dir, best["number"])
    assert best["config"] == expected
    assert isinstance(best["params"]["model.hidden"], list)  # the list, not Optuna's JSON text
    best_yaml = yaml.safe_load((study_dir / "best.yaml").read_text())
    assert best_yaml == expected

    trained = json.loads(tunekit("train", "--best", "--study", "derived", "--runs", runs, "--json").stdout)
    assert trained["config"].pop("search", {}) == {}  # a concrete config: nothing left to search
    assert trained["config"] == expected

    # Optuna's own CLI reads the study and finds the same best trial.
    optuna_cli = Path(sys.executable).with_name("optuna")
    out = subprocess.run(
        [str(optuna_cli), "best-trial", "--study-name", "derived", "--storage", str(journal), "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["number"] == best["number"]


def test_a_resume_with_a_changed_free_key_and_a_warm_start_derive_what_each_trial_ran(tmp_path):
    config = tmp_path / "derived.yaml"
    config.write_text(SWITCHING)
    runs = tmp_path / "runs"
    tunekit("search", config, "--runs", runs, "--trials", "3", "-q")
    # study.trials is free to change: the rerun's trials derive from the new base, the first three from the old.
    tunekit("search", config, "--runs", runs, "--set", "study.trials=6", "-q")
    study_dir = runs / "derived"
    assert _every_trial_derives_its_own(study_dir) == 6
    configs = [_trial_yaml(study_dir, n)["study"]["trials"] for n in range(6)]
    assert configs == [5, 5, 5, 6, 6, 6]

    tunekit("search", config, "--runs", runs, "--study", "warm", "--trials", "4", "--warm-start", "derived", "-q")
    warm = _study(runs / "warm")
    assert [t for t in warm.trials if "warm_start" in t.user_attrs]
    assert _every_trial_derives_its_own(runs / "warm") == 4
