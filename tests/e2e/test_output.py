"""What the CLI prints is the user's data as it is: `[...]` stays literal, JSON keeps YAML's types."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console

from tests.conftest import TINY

LISTS = TINY.replace("trials: 3", "trials: 4") + "  model.hidden: {choices: [[16], [8, 8]]}\n"


def test_report_json_is_report_format_json(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "-q").exit_code == 0
    alias = cli("report", "--runs", runs, "--json")
    full = cli("report", "--runs", runs, "--format", "json")
    assert alias.exit_code == 0 and full.exit_code == 0
    assert alias.stdout == full.stdout and json.loads(alias.stdout)["study"] == "tiny"
    clash = cli("report", "--runs", runs, "--json", "--format", "csv")
    assert clash.exit_code == 2 and "--json" in clash.stderr


def test_list_valued_params_come_back_as_json_lists(cli, write_config, runs):
    searched = cli("search", write_config(LISTS), "--runs", runs, "-q", "--json")
    assert searched.exit_code == 0, searched.stderr
    report = cli("report", "--runs", runs, "--json")
    for out in (json.loads(searched.stdout), json.loads(report.stdout)):
        hidden = [t["params"]["model.hidden"] for t in out["trials"]]
        assert hidden and all(h in ([16], [8, 8]) for h in hidden), hidden
        assert out["best"]["params"]["model.hidden"] in ([16], [8, 8])
        assert out["best"]["params"]["model.hidden"] == out["best"]["config"]["model"]["hidden"]
        # The best-so-far history is numbers, one per completed trial; the sparkline is the table's.
        history = out["history"]
        assert isinstance(history, list) and len(history) == out["states"]["COMPLETE"]
        assert all(isinstance(v, float) for v in history) and history == sorted(history)
    table = cli("report", "--runs", runs)
    assert "best so far, trial by trial: " in table.stdout and "[8, 8]" in table.stdout
    rows = list(csv.DictReader(io.StringIO(cli("report", "--runs", runs, "--format", "csv").stdout)))
    assert {r["model.hidden"] for r in rows} <= {"[16]", "[8, 8]"}


def test_brackets_in_paths_and_hints_print_literally(cli, write_config, tmp_path, monkeypatch):
    runs = tmp_path / "r[plots]"
    trained = cli("train", write_config(), "--runs", runs, "--epochs", "1")
    assert trained.exit_code == 0, trained.stderr
    assert f"checkpoint: {runs}/tiny/train/model.pt" in trained.stdout
    # Without matplotlib, lr-find says which extra gives the PNG.
    monkeypatch.setattr("tunekit.train.lr_find.write_png", lambda *a, **k: False)
    found = cli("lr-find", write_config(), "--runs", runs, "--steps", "10")
    assert found.exit_code == 0, found.stderr
    assert "(pip install 'tunekit[plots]' for a PNG)" in found.stdout
    assert f"curve: {runs}/tiny/lr_find.csv" in found.stdout
    checked = cli("validate", write_config(name="my[plots].yaml"))
    assert checked.exit_code == 0 and checked.stdout.startswith(f"{tmp_path}/my[plots].yaml: valid")


def test_the_report_table_prints_values_literally_even_on_a_markup_console():
    from tunekit.report.formats import report_table

    trial = {
        "number": 0,
        "state": "COMPLETE",
        "value": 0.5,
        "params": {"data.path": "[plots]", "model.act": ":smile:"},
        "reason": None,
        "duration_s": 1.0,
        "best_epoch": 1,
    }
    summary = {
        "study": "s",
        "metric": "val_accuracy",
        "direction": "maximize",
        "n_trials": 1,
        "states": {"COMPLETE": 1, "PRUNED": 0, "FAIL": 0, "RUNNING": 0},
        "reasons": {"[bold]odd": 1},
        "best": {"number": 0, "value": 0.5, "params": trial["params"]},
        "trials": [trial],
        "importance": {},
        "advice": ["pip install 'tunekit[plots]' for plots"],
        "history": [0.5],
    }
    out = io.StringIO()
    report_table(summary, Console(file=out, width=200, markup=True, emoji=True), top=5)
    text = out.getvalue()
    assert "data.path = [plots]" in text and "model.act = :smile:" in text
    assert "│ [plots]" in text and "[bold]odd x1" in text
    assert "pip install 'tunekit[plots]' for plots" in text
    assert "best so far, trial by trial: █" in text
