"""The report's advice, and the config checks it relies on, followed as a user would: through the
real CLI in a subprocess, on tiny real trainings (iris, a few epochs)."""

import json
import os
import subprocess
import sys

TUNEKIT = [sys.executable, "-m", "tunekit"]


def tunekit(tmp_path, *args, timeout=300):
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [*TUNEKIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path
    )


def config(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# Ten sigmoid layers: every sigmoid trial stops with vanishing gradients, relu trials train.
DEEP = """\
name: deep
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [32, 32, 32, 32, 32, 32, 32, 32, 32, 32], activation: sigmoid}
init: {weight: xavier_normal, bias: zeros}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 4, batch_size: 32}
study: {trials: 12, sampler: {name: random, seed: 0}, pruner: {name: none}}
search:
  model.activation: {choices: [sigmoid, relu]}
  optimizer.lr: {low: 1e-3, high: 3e-2, log: true}
"""


def test_a_parameter_that_decides_failure_is_reported_important(tmp_path):
    result = tunekit(tmp_path, "search", config(tmp_path, DEEP), "-q", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    failed = [t for t in out["trials"] if t["state"] == "FAIL"]
    assert failed and {t["params"]["model.activation"] for t in failed} == {"sigmoid"}
    assert {t["reason"] for t in failed} == {"vanishing_gradients"}
    # On the completed trials alone (all relu) the activation would score ~0 and "barely matter".
    assert out["importance"]["model.activation"] >= 0.05, out["importance"]
    assert not any(a.startswith("model.activation: barely matters") for a in out["advice"]), out["advice"]
    assert any(
        a.startswith(
            f'model.activation = "sigmoid" failed in {len(failed)} of {len(failed)} trials (vanishing_gradients)'
        )
        for a in out["advice"]
    ), out["advice"]
    table = tunekit(tmp_path, "report", "deep")
    assert table.returncode == 0 and "model.activation" in table.stdout and "barely matters" not in table.stdout


CATEGORICAL_LR = """\
name: catlr
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 3, batch_size: 16}
study: {trials: 16, sampler: {name: grid, seed: 0}, pruner: {name: none}}
search:
  optimizer.lr: {choices: [0.001, 0.01, 0.1, 100.0]}
  train.batch_size: {choices: [16, 32]}
  model.hidden: {choices: [[8], [16]]}
"""


def test_divergence_advice_on_a_list_of_learning_rates(tmp_path):
    result = tunekit(tmp_path, "search", config(tmp_path, CATEGORICAL_LR), "-q", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    diverged = [t for t in out["trials"] if t["state"] == "FAIL"]
    assert {t["params"]["optimizer.lr"] for t in diverged} == {100.0}
    assert (
        f"optimizer.lr >= 100 diverged in {len(diverged)} of 4 trials; drop the values >= 100 from `choices` and "
        "search with --study NEW_NAME (a narrower space is a new study; this one does not resume with it)"
    ) in out["advice"], out["advice"]


WIDE = """\
name: wide
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 32}
study: {trials: 3, sampler: {name: tpe, seed: 0}, pruner: {name: none}}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  train.batch_size: {choices: [16, 32]}
"""


def test_a_widened_range_continues_the_study_and_a_narrowed_one_is_refused(tmp_path):
    path = config(tmp_path, WIDE)
    first = tunekit(tmp_path, "search", path, "-q")
    assert first.returncode == 0, first.stderr

    path.write_text(WIDE.replace("low: 1e-3, high: 1e-1", "low: 1e-4, high: 0.5"))
    wider = tunekit(tmp_path, "search", path, "--trials", "6", "--json")
    assert wider.returncode == 0, wider.stderr
    assert (
        "note: the search space widened, continuing the study: "
        "search.optimizer.lr [0.001, 0.1] log -> [0.0001, 0.5] log" in wider.stderr
    )
    out = json.loads(wider.stdout)
    assert out["n_trials"] == 6 and out["states"]["COMPLETE"] == 6  # the 3 earlier trials kept, 3 new ones

    again = tunekit(tmp_path, "search", path, "--trials", "7", "-q")  # the widened space is now the study's
    assert again.returncode == 0 and "widened" not in again.stderr, again.stderr

    path.write_text(WIDE.replace("low: 1e-3, high: 1e-1", "low: 1e-4, high: 0.2"))
    narrower = tunekit(tmp_path, "search", path, "--trials", "8", "-q")
    assert narrower.returncode == 5
    assert "~ optimizer.lr.high: 0.5 -> 0.2" in narrower.stderr and "--fresh" in narrower.stderr

    path.write_text(WIDE.replace("low: 1e-3, high: 1e-1", "low: 1e-4, high: 0.5").replace("[16, 32]", "[16, 32, 64]"))
    more_choices = tunekit(tmp_path, "search", path, "--trials", "8", "-q")
    assert more_choices.returncode == 5 and "Optuna cannot add choices" in more_choices.stderr


# One problem per stage: a misspelled section key, an inverted range, a search key that addresses nothing.
THREE_STAGES = """\
name: three
data: {name: iris}
train: {epochs: 2, batchsize: 32}
study: {trials: 2, pruner: {name: none}}
search:
  optimizer.lr: {low: 1e-1, high: 1e-3, log: true}
  optimizer.lrr: {low: 1e-3, high: 1e-1}
"""


def test_every_problem_of_every_stage_at_once_in_file_order(tmp_path):
    config(tmp_path, THREE_STAGES)
    for command in (["validate", "c.yaml"], ["search", "c.yaml", "--runs", "runs"]):
        result = tunekit(tmp_path, *command)
        assert result.returncode == 3, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 3, result.stderr
        assert errors[0].startswith("error: c.yaml:3: train.batchsize: unknown key in train")
        assert errors[1].startswith("error: c.yaml:6: search.optimizer.lr: `low <= high` must hold")
        assert errors[2].startswith("error: c.yaml:7: search.optimizer.lrr: ") and "did you mean 'lr'" in errors[2]
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


UNVARYING = """\
name: unvarying
data: {name: iris}
model: {name: mlp, hidden: [8, 8]}
train: {epochs: 2}
study: {trials: 2, pruner: {name: none}}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
"""


def test_keys_a_study_cannot_vary_and_list_indexes_are_config_errors(tmp_path):
    entries = {
        "study.trials": "{choices: [2, 3]}",
        "seed": "{choices: [0, 1]}",
        "name": "{choices: [a, b]}",
        "train.device": "{choices: [cpu, auto]}",
        "train.threads": "{choices: [1, 2]}",
        "model.hidden.0": "{choices: [4, 8]}",
        "optimizer.weight_decay": "{low: 0.0, high: 0.1, when: {optimizer.lr: [0.01]}}",
    }
    for key, entry in entries.items():
        path = config(tmp_path, UNVARYING + f"  {key}: {entry}\n")
        result = tunekit(tmp_path, "validate", path)
        assert result.returncode == 3, (key, result.stderr)
        assert f"c.yaml:8: search.{key}" in result.stderr and "(hint: " in result.stderr, result.stderr
        assert "internal error" not in result.stderr, result.stderr
    assert (
        "search the whole list as choices instead"
        in tunekit(tmp_path, "validate", config(tmp_path, UNVARYING + "  model.hidden.0: {choices: [4, 8]}\n")).stderr
    )


REFUSED_CORNERS = """\
name: corners
data: {name: iris}
model: {name: mlp, hidden: [8], dropout: 0.1}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2}
study: {trials: 2, pruner: {name: none}}
search:
  model.dropout: {low: 0.1, high: 1.5}
  optimizer.name: {choices: [adam, sgd]}
  optimizer.momentum: {low: 0.5, high: 0.9, when: {optimizer.name: [sgd]}}
  optimizer.nesterov: {choices: [false, true], when: {optimizer.name: [sgd]}}
  optimizer.lr: {low: -1, high: 0.1}
"""


def test_corners_torch_rejects_are_config_errors_before_any_trial(tmp_path):
    config(tmp_path, REFUSED_CORNERS)
    for command in (["validate", "c.yaml"], ["search", "c.yaml", "--runs", "runs"]):
        result = tunekit(tmp_path, *command)
        assert result.returncode == 3, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert errors == [
            "error: c.yaml:8: search.model.dropout: value 1.5 is refused: dropout must be in [0, 1), got 1.5",
            "error: c.yaml:12: search.optimizer.lr: value -1.0 is refused: Invalid learning rate: -1.0",
        ], result.stderr  # nesterov: true is fine: the searched momentum gives it one
    assert not (tmp_path / "runs").exists()


GRID = """\
name: gridwide
data: {name: iris}
model: {name: mlp, hidden: [8]}
train: {epochs: 2}
study: {trials: 10, sampler: {name: bruteforce}, pruner: {name: none}}
search:
  train.epochs: {low: 2, high: 3}
"""


def test_a_widened_grid_walks_its_new_points(tmp_path):
    path = config(tmp_path, GRID)
    first = tunekit(tmp_path, "search", path, "-q", "--json")
    assert first.returncode == 0, first.stderr
    assert sorted(t["params"]["train.epochs"] for t in json.loads(first.stdout)["trials"]) == [2, 3]
    path.write_text(GRID.replace("low: 2, high: 3", "low: 1, high: 4"))
    wider = tunekit(tmp_path, "search", path, "--json")
    assert wider.returncode == 0, wider.stderr
    assert "search.train.epochs [2, 3] -> [1, 4]" in wider.stderr
    assert sorted(t["params"]["train.epochs"] for t in json.loads(wider.stdout)["trials"]) == [1, 2, 3, 4]


def test_every_component_torch_refuses_at_once(tmp_path):
    config(
        tmp_path,
        "data: {name: iris}\n"
        "model: {name: mlp, hidden: [8], dropout: 1.5}\n"
        "optimizer: {name: adam, betas: [0.9, 1.5]}\n"
        "schedule: {name: step, step_size: 0}\n"
        "train: {epochs: 2}\n",
    )
    result = tunekit(tmp_path, "validate", "c.yaml")
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[2:4] for e in errors] == [
        ["2", " model.dropout"],
        ["3", " optimizer.betas"],
        ["4", " schedule.step_size"],
    ], errors


def test_what_torch_refuses_is_reported_with_the_yaml_problems_and_a_duplicate_key(tmp_path):
    # Before: torch's refusals only appeared once the YAML stages were clean, and a duplicate key
    # stopped everything after it.
    config(
        tmp_path,
        "data: {name: iris}\n"
        "model:\n"
        "  name: mlp\n"
        "  hidden: [8]\n"
        "  dropout: 1.5\n"
        "optimizer: {name: adam, betas: [0.9, 1.5]}\n"
        "train: {epochs: 2, batch_sise: 8}\n"
        "train: {epochs: 3}\n"
        "search:\n"
        "  optimizer.lr: {low: 1, high: 0.1}\n",
    )
    result = tunekit(tmp_path, "validate", "c.yaml")
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[2:4] for e in errors] == [
        ["5", " model.dropout"],
        ["6", " optimizer.betas"],
        ["8", " train"],
        ["10", " search.optimizer.lr"],
    ], errors
    assert "duplicate key (first defined on line 7)" in errors[2]


def test_without_a_search_block_torch_refusals_still_come_with_the_other_problems(tmp_path):
    # Before: no search block meant no stand-in config, so dropout 1.5 and lr -0.1 waited for train.epochs.
    config(
        tmp_path,
        "data: {name: digits}\nmodel: {name: mlp, dropout: 1.5}\noptimizer: {name: adamw, lr: -0.1}\n"
        "train: {epochs: true}\nstudy:\n  metric: val_acc\n",
    )
    result = tunekit(tmp_path, "validate", "c.yaml", "--json")
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[2:4] for e in errors] == [
        ["2", " model.dropout"],
        ["3", " optimizer.lr"],
        ["4", " train.epochs"],
        ["6", " study.metric"],
    ], errors
    document = json.loads(result.stdout)  # --json: one document even when the config is invalid
    assert document["valid"] is False and [p["path"] for p in document["problems"]] == [
        "model.dropout",
        "optimizer.lr",
        "train.epochs",
        "study.metric",
    ]


def test_a_bad_search_entry_does_not_hide_another_entrys_refused_corner(tmp_path):
    config(tmp_path, "data: {name: iris}\nsearch:\n  seed: {choices: [0, 1]}\n  model.dropout: {low: 0.0, high: 1.5}\n")
    result = tunekit(tmp_path, "validate", "c.yaml")
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[2:4] for e in errors] == [["3", " search.seed"], ["4", " search.model.dropout"]], errors
    assert "value 1.5 is refused" in errors[1]


def test_a_metric_that_does_not_fit_the_task_points_at_its_line(tmp_path):
    config(tmp_path, "data: {name: digits}\nmodel: {name: mlp}\nstudy:\n  metric: val_acc\ntrain: {batch_sise: 3}\n")
    errors = [line for line in tunekit(tmp_path, "validate", "c.yaml").stderr.splitlines() if line.startswith("error")]
    assert [e.split(":")[2:4] for e in errors] == [["4", " study.metric"], ["5", " train.batch_sise"]], errors
