"""Several objectives: a Pareto front, a stated rule for `best`, and no pruning."""

import json

import yaml

from tests.conftest import TINY

PARETO = TINY.replace(
    "study:\n  trials: 3", "study:\n  objectives: [{metric: val_accuracy}, {metric: params}]\n  trials: 8"
).replace(
    "  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}",
    "  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}\n  model.hidden: {choices: [[2], [8], [32, 32]]}",
)


def test_pareto_study(cli, write_config, runs):
    result = cli("search", write_config(PARETO), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    s = json.loads(result.stdout)
    assert s["objectives"] == [
        {"metric": "val_accuracy", "direction": "maximize"},
        {"metric": "params", "direction": "minimize"},
    ]
    assert s["direction"] == ["maximize", "minimize"] and "pruning" in s
    complete = {t["number"]: t["value"] for t in s["trials"] if t["state"] == "COMPLETE"}
    front = s["pareto"]
    assert front and all(isinstance(complete[n], list) and len(complete[n]) == 2 for n in front)
    # no front member is dominated by any completed trial
    for n in front:
        acc, params = complete[n]
        assert not any(a >= acc and p <= params and (a > acc or p < params) for a, p in complete.values())
    # best = the front member with the highest accuracy (ties: fewest params)
    assert s["best"]["number"] == max(front, key=lambda n: (complete[n][0], -complete[n][1]))
    assert (
        yaml.safe_load((runs / "tiny" / "best.yaml").read_text())["model"]["hidden"]
        == s["best"]["config"]["model"]["hidden"]
    )

    table = cli("report", "--runs", runs)
    assert "Pareto front" in table.stdout and "train --best --pick N" in table.stdout
    other = next((n for n in front if n != s["best"]["number"]), front[0])
    trained = cli("train", "--best", "--pick", other, "--runs", runs, "--json")
    assert trained.exit_code == 0, trained.stderr
    assert json.loads(trained.stdout)["config"]["model"]["hidden"] == s["trials"][other]["params"]["model.hidden"]
    assert cli("train", "--best", "--pick", 999, "--runs", runs).exit_code == 5


def test_objectives_are_validated(cli, write_config):
    bad = TINY.replace(
        "study:\n  trials: 3", "study:\n  objectives: [{metric: val_acc}, {metric: params}]\n  trials: 3"
    )
    result = cli("validate", write_config(bad))
    assert (
        result.exit_code == 3
        and "study.objectives.0.metric: 'val_acc' is not a classification metric (hint: did you mean 'val_accuracy'?)"
        in result.stderr
    )
    one = TINY.replace("study:\n  trials: 3", "study:\n  objectives: [{metric: val_accuracy}]\n  trials: 3")
    assert "list two or more objectives" in cli("validate", write_config(one)).stderr
