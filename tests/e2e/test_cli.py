"""The real CLI end to end: search -> train --best -> report, on real data and a real study on disk."""

import csv
import io
import json

import optuna
import pytest
import yaml

from tests.conftest import TINY


def test_search_train_report(cli, write_config, runs):
    config = write_config()
    result = cli("search", config, "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)  # --json: stdout is exactly one JSON document
    for key in ("study", "storage", "metric", "direction", "n_trials", "states", "best", "trials", "importance"):
        assert key in summary
    assert summary["study"] == "tiny" and summary["n_trials"] == 3 and summary["states"]["COMPLETE"] == 3
    assert summary["best"]["config"]["optimizer"]["lr"] == summary["best"]["params"]["optimizer.lr"]
    assert "[3/3] trial 2" in result.stderr  # progress goes to stderr, one line per trial

    study = runs / "tiny"
    assert (
        (study / "optuna.journal").is_file() and (study / "config.yaml").is_file() and (study / "best.yaml").is_file()
    )
    for n in range(3):
        trial = study / "trials" / f"{n:05d}"
        lines = (trial / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 3 and json.loads(lines[0])["epoch"] == 1
        assert "search" not in yaml.safe_load((trial / "config.yaml").read_text())
    # trial 0 is the baseline: the config's own values
    assert summary["trials"][0]["params"] == {"optimizer.lr": 0.01}
    # the journal is plain Optuna: readable without tunekit
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    loaded = optuna.load_study(
        study_name="tiny", storage=JournalStorage(JournalFileBackend(str(study / "optuna.journal")))
    )
    assert len(loaded.trials) == 3

    result = cli("train", "--best", "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    trained = json.loads(result.stdout)
    assert set(trained) >= {"config", "device", "epochs", "metrics", "checkpoint", "duration_s"}
    assert 0.5 <= trained["metrics"]["test_accuracy"] <= 1.0 and trained["device"] == "cpu"
    assert (study / "best" / "model.pt").is_file() and (study / "best" / "metrics.json").is_file()
    import torch

    checkpoint = torch.load(study / "best" / "model.pt", weights_only=True)  # plain data only
    assert checkpoint["task"] == "classification" and "state_dict" in checkpoint

    result = cli("report", "tiny", "--runs", runs, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["best"]["number"] == summary["best"]["number"]
    rows = list(csv.DictReader(io.StringIO(cli("report", "--runs", runs, "--format", "csv").stdout)))
    assert len(rows) == 3 and rows[0]["state"] == "COMPLETE" and float(rows[0]["optimizer.lr"]) == 0.01
    markdown = cli("report", "--runs", runs, "--format", "markdown").stdout
    assert markdown.startswith("## Study `tiny`") and "| # | val_accuracy |" in markdown
    table = cli("report", "--runs", runs)
    assert table.exit_code == 0 and "best: trial #" in table.stdout

    listing = json.loads(cli("list", "--runs", runs, "--json").stdout)
    assert listing[0]["study"] == "tiny" and listing[0]["n_trials"] == 3


def test_rerun_resumes_and_tops_up(cli, write_config, runs):
    config = write_config()
    assert cli("search", config, "--runs", runs, "--trials", "2").exit_code == 0
    result = cli("search", config, "--runs", runs, "--trials", "4", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_trials"] == 4 and [t["number"] for t in summary["trials"]] == [0, 1, 2, 3]
    assert "2/4 trials done" in result.stderr
    # A rerun at the target trains nothing more.
    again = json.loads(cli("search", config, "--runs", runs, "--trials", "4", "--json").stdout)
    assert again["n_trials"] == 4


def test_changed_space_is_refused_with_the_difference(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0
    # A narrower range (a wider one continues the study: tests/e2e/test_advice_journeys.py).
    changed = write_config(TINY.replace("high: 1e-1, log: true", "high: 0.05, log: true"))
    result = cli("search", changed, "--runs", runs)
    assert result.exit_code == 5
    assert "search space differs" in result.stderr and "~ optimizer.lr.high: 0.1 -> 0.05" in result.stderr
    fresh = cli("search", changed, "--runs", runs, "--trials", "1", "--fresh", "--json")
    assert fresh.exit_code == 0 and json.loads(fresh.stdout)["n_trials"] == 1
    archived = list((runs / "tiny" / "archive").glob("*/optuna.journal"))
    assert len(archived) == 1  # the old study was moved aside, not deleted


def test_changed_base_config_is_refused_but_device_may_change(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0
    result = cli("search", write_config(), "--runs", runs, "--trials", "2", "--set", "model.hidden=[4]")
    assert result.exit_code == 5 and "~ model.hidden" in result.stderr
    assert cli("search", write_config(), "--runs", runs, "--trials", "2", "--set", "train.device=cpu").exit_code == 0


def test_torn_journal_is_detected_and_repaired(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0
    journal = runs / "tiny" / "optuna.journal"
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "tri')  # a crash mid-append
    result = cli("search", write_config(), "--runs", runs, "--trials", "2")
    assert result.exit_code == 5 and "torn line" in result.stderr and "--repair" in result.stderr
    result = cli("search", write_config(), "--runs", runs, "--trials", "2", "--repair", "--json", "-q")
    assert result.exit_code == 0 and json.loads(result.stdout)["n_trials"] == 2
    assert result.stderr == ""  # -q: the repair note too is left out (the next test reads it)
    assert list((runs / "tiny").glob("optuna.journal.*.bak"))


def test_repair_keeps_a_whole_last_record_that_only_lacks_its_newline(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "--trials", "2").exit_code == 0
    journal = runs / "tiny" / "optuna.journal"
    journal.write_bytes(journal.read_bytes()[:-1])  # the last record is whole; only "\n" is missing
    result = cli("search", write_config(), "--runs", runs, "--trials", "3", "--repair", "--json")
    assert result.exit_code == 0, result.stderr
    assert "added the missing final newline; every record kept" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["states"]["COMPLETE"] == 3  # the old code cut trial 1's last record and lost it


def test_a_corrupt_middle_line_is_named_and_set_aside_into_a_backup(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "--trials", "2").exit_code == 0
    journal = runs / "tiny" / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    middle = next(i for i, line in enumerate(lines) if i > len(lines) // 2 and b'"op_code":8' in line)
    lines[middle] = b'{"op_code":8,"worker_id": garbage\n'
    journal.write_bytes(b"".join(lines))
    for command in (["search", write_config(), "--trials", "3"], ["report"]):
        result = cli(*command, "--runs", runs)
        assert result.exit_code == 5 and f"line(s) {middle + 1} of" in result.stderr, result.stderr
        assert "tunekit search CONFIG --study NAME --repair" in result.stderr  # a flag that exists
    result = cli("search", write_config(), "--runs", runs, "--trials", "3", "--repair", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["states"]["COMPLETE"] == 3
    assert f"set aside line(s) {middle + 1} of {len(lines)}" in result.stderr
    (backup,) = (runs / "tiny").glob("optuna.journal.*.bak")
    assert b"garbage" in backup.read_bytes() and b"garbage" not in journal.read_bytes()


def test_failed_trials_do_not_stop_the_study(cli, write_config, runs):
    text = TINY.replace("low: 1e-3, high: 1e-1", "low: 1e-3, high: 1e9").replace(
        "optimizer: {name: adam, lr: 0.01}", "optimizer: {name: sgd, lr: 0.01}"
    )
    text = (
        text.replace("trials: 3", "trials: 6")
        .replace("epochs: 3", "epochs: 4")
        .replace(
            "model: {name: mlp, hidden: [16]}", "model: {name: mlp, hidden: [16, 16]}\ninit: {weight: normal, std: 1.0}"
        )
    )
    result = cli("search", write_config(text), "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["states"]["FAIL"] >= 1 and summary["states"]["COMPLETE"] >= 1
    assert set(summary["reasons"]) <= {"nonfinite_loss", "exploding_gradients", "vanishing_gradients"}
    failed = [t for t in summary["trials"] if t["state"] == "FAIL"]
    assert all(t["reason"] for t in failed)
    # The trial's metrics end with the epoch that went wrong and why.
    last = json.loads(
        (runs / "tiny" / "trials" / f"{failed[0]['number']:05d}" / "metrics.jsonl").read_text().splitlines()[-1]
    )
    assert last["stopped"] == failed[0]["reason"] and "grad_norm" in last


def test_every_trial_failing_exits_6(cli, write_config, runs):
    text = TINY.replace("low: 1e-3, high: 1e-1, log: true", "low: 1e8, high: 1e9, log: true").replace(
        "optimizer: {name: adam, lr: 0.01}", "optimizer: {name: sgd, lr: 1e8}"
    )
    text = text.replace(
        "model: {name: mlp, hidden: [16]}", "model: {name: mlp, hidden: [16]}\ninit: {weight: normal, std: 1.0}"
    )
    result = cli("search", write_config(text), "--runs", runs)
    assert result.exit_code == 6
    assert "error: every trial failed (" in result.stderr


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["search", "missing.yaml"], 4, "config file not found"),
        (["train", "--best"], 5, "no study found under"),
        (["report", "nope"], 5, "no study 'nope'"),
        (["report", "../etc"], 2, "invalid study name"),
        (["search", "CONFIG", "--study", "a/b"], 2, "invalid study name"),
        (["search", "CONFIG", "--timeout", "soon"], 2, "is not a duration"),
        (["search", "CONFIG", "--set", "optimizer.lr"], 2, "--set expects KEY=VALUE"),
        (["search", "CONFIG", "--set", "optimizer.lrr=1"], 3, "did you mean 'lr'?"),
        (["report", "--format", "jsn"], 2, "did you mean 'json'?"),
        (["train"], 2, "give either a CONFIG or --best"),
        (["search", "CONFIG", "--set", "train.device=cuda:7"], 4, "is not available"),
    ],
)
def test_exit_codes_and_messages(cli, write_config, runs, args, code, fragment):
    import torch

    if "cuda:7" in " ".join(args) and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    args = [str(write_config()) if a == "CONFIG" else a for a in args]
    result = cli(*args, "--runs", runs)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not (runs / "tiny").exists()  # nothing written for bad input


def test_invalid_config_lists_every_problem_and_writes_nothing(cli, write_config, runs):
    bad = write_config("data: {name: digts}\nmodel: {name: mlp, hiden: [4]}\ntrain: {epochs: true}\n")
    result = cli("search", bad, "--runs", runs)
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {bad}:1: data.name: unknown dataset 'digts' (hint: did you mean 'digits'?)",
        f"error: {bad}:2: model.hiden: unknown key for model 'mlp' (hint: did you mean 'hidden'?)",
        f"error: {bad}:3: train.epochs: Input should be a valid integer, got bool True",
    ]
    assert not runs.exists()


def test_validate_prints_the_space(cli, write_config):
    result = cli("validate", write_config(), "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["valid"] and info["params"] == 4 * 16 + 16 + 16 * 3 + 3
    assert info["space"] == [{"key": "optimizer.lr", "type": "float", "range": "[0.001, 0.1] log"}]


def test_config_from_stdin(cli, runs):
    result = cli("validate", "-", input=TINY)
    assert result.exit_code == 0 and "valid" in result.stdout
    assert cli("validate", "-", input="").exit_code == 3


def test_train_a_plain_config(cli, write_config, runs):
    result = cli("train", write_config(), "--runs", runs, "--epochs", "2", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["epochs"] == 2 and (runs / "tiny" / "train" / "model.pt").is_file()


def test_corrupt_best_yaml_is_regenerated_from_the_study(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs).exit_code == 0
    (runs / "tiny" / "best.yaml").write_text("optimizer: [this is not\n")
    result = cli("train", "--best", "--study", "tiny", "--runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load((runs / "tiny" / "best.yaml").read_text())["data"] == {"name": "iris"}


def test_dry_run_steps_once_and_writes_nothing(cli, write_config, runs):
    result = cli("search", write_config(), "--runs", runs, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["dry_run"]["batch"] == 32 and info["dry_run"]["loss"] > 0 and info["dry_run"]["device"] == "cpu"
    assert 1e-3 <= info["sample"]["optimizer"]["lr"] <= 1e-1 and "search" not in info["sample"]
    assert not runs.exists()
    text = cli("validate", write_config())
    assert "one sampled trial config:" in text.stdout and "optimizer:" in text.stdout


def test_train_with_several_seeds(cli, write_config, runs):
    result = cli("train", write_config(), "--runs", runs, "--seeds", "3", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    stats = out["seed_stats"]
    acc = stats["metrics"]["test_accuracy"]
    assert stats["seeds"] == [0, 1, 2] and stats["completed"] == 3 and stats["stopped"]["count"] == 0
    assert min(acc["values"]) <= acc["mean"] <= max(acc["values"]) and acc["std"] >= 0
    # Every seed reports its own run, not the first seed's: metrics, epochs, duration and its files.
    assert [s["seed"] for s in out["seeds"]] == [0, 1, 2]
    assert [s["metrics"]["test_accuracy"] for s in out["seeds"]] == acc["values"]
    assert all(s["duration_s"] > 0 and s["epochs"] >= 1 and "val_accuracy" in s["metrics"] for s in out["seeds"])
    assert out["seeds"][2]["checkpoint"] == str(runs / "tiny" / "train" / "seeds" / "2" / "model.pt")
    assert (runs / "tiny" / "train" / "seeds.json").is_file() and (
        runs / "tiny" / "train" / "seeds" / "2" / "model.pt"
    ).is_file()


def test_html_report_is_self_contained(cli, write_config, runs, tmp_path):
    assert cli("search", write_config(), "--runs", runs).exit_code == 0
    page = tmp_path / "report.html"
    result = cli("report", "--runs", runs, "--html", page, "--format", "json")
    assert result.exit_code == 0, result.stderr
    text = page.read_text()
    for title in ("Learning curves", "Optimization history", "Parameter importance", "Slice", "Parallel coordinates"):
        assert f"'>{title}" in text
    # plotly.js inlined once (packed), nothing fetched; tests/report/test_html.py checks the page itself
    assert "<script src=" not in text and text.count("id='plotly-packed'") == 1
    assert json.loads(result.stdout)["study"] == "tiny"  # --html comes on top of the chosen format
    import os
    import stat

    assert stat.S_IMODE(os.stat(page).st_mode) & 0o044  # readable by others, like any file (not mkstemp's 0600)


def test_html_without_plotly_says_what_to_install(cli, write_config, runs, tmp_path, monkeypatch):
    import sys

    assert cli("search", write_config(), "--runs", runs).exit_code == 0
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if the extra were not installed
    result = cli("report", "--runs", runs, "--html", tmp_path / "r.html")
    assert result.exit_code == 4 and "--html needs plotly (hint: pip install 'tunekit[plots]')" in result.stderr


def test_a_misspelt_study_name_gets_a_did_you_mean(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "--study", "quickstart", "--trials", "1", "-q").exit_code == 0
    expected = f"error: no study 'quickstrat' under {runs}/ (hint: did you mean 'quickstart'?)\n"
    for command in (
        ["report", "quickstrat"],
        ["train", "--best", "--study", "quickstrat"],
        ["predict", "--study", "quickstrat", "x.csv"],
        ["stop", "quickstrat"],
    ):
        result = cli(*command, "--runs", runs)
        assert (result.exit_code, result.stderr) == (5, expected), command
    far = cli("report", "zzz", "--runs", runs)
    assert (
        far.stderr
        == f"error: no study 'zzz' under {runs}/ (hint: run `tunekit search` first, or check --runs / --study)\n"
    )


def test_a_very_long_study_name_is_not_echoed_whole(cli, runs):
    result = cli("report", "x" * 5000, "--runs", runs)
    assert result.exit_code == 2
    assert "invalid study name 'xxxxxxxx" in result.stderr and "...' (5000 characters)" in result.stderr
    assert len(result.stderr) < 400
