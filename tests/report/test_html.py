"""`tunekit report --html FILE`: what the page holds, what it weighs, and that a browser draws it."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess

import optuna
import pytest

from tests.conftest import TINY
from tunekit.report.html import MAX_CURVES, embedded, write_html
from tunekit.report.summary import summarize
from tunekit.runs import StudyDir

TWO_PARAMS = TINY.replace("trials: 3", "trials: 5") + "  optimizer.weight_decay: {low: 1e-6, high: 1e-2, log: true}\n"
MB2 = 2 * 1024 * 1024


def _figures(text: str) -> dict[str, dict]:
    """The page's figures (one packed JSON document), by the id of the div each is drawn in."""
    return {f["id"]: f["fig"] for f in json.loads(embedded(text, "figures"))["figures"]}


def _plot_divs(text: str) -> list[str]:
    return re.findall(r"<div class='plot' id='([^']+)'>", text)


def _table_rows(text: str) -> list[int]:
    table = re.search(r"<table class='sortable' id='trials-table'>(.*?)</table>", text, re.S)
    assert table, "a sortable trials table"
    return [int(n) for n in re.findall(r"<tr(?: class='[^']*')? id='trial-(\d+)'>", table.group(1))]


@pytest.fixture
def small_page(cli, write_config, runs, tmp_path):
    """A small real study (iris, 5 trials of 3 epochs, two searched parameters) and its page."""
    assert cli("search", write_config(TWO_PARAMS), "--runs", runs, "-q").exit_code == 0
    page = tmp_path / "report.html"
    result = cli("report", "tiny", "--runs", runs, "--html", page, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return page, json.loads(result.stdout)


def test_page_of_a_real_study_has_curves_table_and_every_plot(small_page):
    page, summary = small_page
    text = page.read_text(encoding="utf-8")
    figures = _figures(text)
    divs = _plot_divs(text)
    for div in ("curves-metric", "curves-loss", "history", "importance", "slice-0", "slice-1", "parallel"):
        assert div in divs and div in figures, div
    assert set(divs) == set(figures)  # every div is drawn, every figure has its div

    # Learning curves from each trial's metrics.jsonl: all five trials, three epochs each, best on top.
    best = summary["best"]["number"]
    metric = figures["curves-metric"]["data"]
    assert len(metric) == 5 and all(t["x"] == [1, 2, 3] for t in metric)
    assert metric[-1]["name"] == f"trial #{best} (best)" and metric[-1]["line"]["width"] == 3
    assert all(t["line"]["width"] == 1 for t in metric[:-1])
    assert figures["curves-metric"]["layout"]["yaxis"]["title"]["text"] == summary["metric"]
    loss = {t["name"] for t in figures["curves-loss"]["data"]}
    assert {f"trial #{best} (best) train_loss", f"trial #{best} (best) val_loss"} <= loss
    assert len(figures["curves-loss"]["data"]) == 2 * 5  # train and val loss per trial

    # The table: every trial, sortable by clicking a header, the best trial marked.
    assert _table_rows(text) == [t["number"] for t in summary["trials"]] == list(range(5))
    assert f"<tr class='best' id='trial-{best}'>" in text
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", text).group(1)
    columns = re.findall(r"<th[^>]*>([^<]*)</th>", head)
    assert columns == ["#", "state", summary["metric"], "reason", "duration_s", "lr", "weight_decay"]
    assert "addEventListener('click'" in text

    # Responsive: no figure keeps a fixed width; plotly draws each at its div's width.
    assert all("width" not in f.get("layout", {}) for f in figures.values())
    assert "responsive:true" in text
    # plotly.js once, inline, whole: the packed copy unpacks to plotly's own file; nothing is fetched.
    from plotly.offline import get_plotlyjs

    assert text.count("id='plotly-packed'") == 1 and "<script src=" not in text
    assert embedded(text, "plotly") == get_plotlyjs()
    assert len(text.encode()) < MB2


def _synthesized(tmp_path, n: int = 500, epochs: int = 60, objectives: int = 1):
    """A study of `n` finished trials with the attributes tunekit records, and a metrics.jsonl per
    trial, made in memory without training anything."""
    rng = random.Random(0)
    directions = ["maximize"] + ["minimize"] * (objectives - 1)
    study = optuna.create_study(study_name="big", directions=directions)
    study.set_user_attr("tunekit.metric", "val_accuracy")
    if objectives > 1:
        study.set_user_attr(
            "tunekit.objectives",
            [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}],
        )
    dists = {
        "optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "optimizer.weight_decay": optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True),
        "model.dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
        "train.batch_size": optuna.distributions.CategoricalDistribution([32, 64, 128]),
        "optimizer.name": optuna.distributions.CategoricalDistribution(["adam", "sgd"]),
    }
    study_dir = StudyDir(tmp_path / "runs", "big")
    for number in range(n):
        params = {
            "optimizer.lr": 10 ** rng.uniform(-4, -1),
            "optimizer.weight_decay": 10 ** rng.uniform(-6, -2),
            "model.dropout": rng.uniform(0, 0.5),
            "train.batch_size": rng.choice([32, 64, 128]),
            "optimizer.name": rng.choice(["adam", "sgd"]),
        }
        final = rng.uniform(0.5, 0.98)
        lines = [
            {
                "epoch": e,
                "train_loss": 2 / e + rng.random() * 0.1,
                "val_loss": 2 / e + rng.random() * 0.2,
                "val_accuracy": final * (1 - 0.5 / e),
                "lr": params["optimizer.lr"],
                "grad_norm": rng.random(),
                "layer_grad_norms": {"blocks.0": rng.random(), "head": rng.random()},
            }
            for e in range(1, epochs + 1)
        ]
        folder = study_dir.trial_dir(number)
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        state = optuna.trial.TrialState.COMPLETE if number % 10 else optuna.trial.TrialState.PRUNED
        values = None
        if state == optuna.trial.TrialState.COMPLETE:
            values = [lines[-1]["val_accuracy"]] + ([rng.uniform(1e3, 1e5)] if objectives > 1 else [])
        result = {"duration_s": rng.uniform(1, 60), "best_epoch": epochs, "epochs_run": epochs}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=params,
                distributions=dists,
                user_attrs={"config": {"optimizer": {"lr": params["optimizer.lr"]}}, "result": result},
            )
        )
    return study, study_dir


def test_a_500_trial_study_page_stays_under_2_mb(tmp_path):
    study, study_dir = _synthesized(tmp_path)
    summary = summarize(study, "memory")
    page = tmp_path / "big.html"
    write_html(study, summary, page, study_dir)
    text = page.read_text(encoding="utf-8")
    size = len(text.encode())
    assert size < MB2, f"{size / 1e6:.2f} MB"
    assert _table_rows(text) == list(range(500))  # the table still lists every trial
    figures = _figures(text)
    metric = figures["curves-metric"]["data"]
    assert len(metric) == MAX_CURVES and metric[-1]["name"] == f"trial #{summary['best']['number']} (best)"
    assert f"curves of {MAX_CURVES} of 500 trials (the best among them)" in text
    assert {"history", "importance", "parallel", "slice-4"} <= set(figures)


def test_several_objectives_add_the_pareto_front(tmp_path):
    study, study_dir = _synthesized(tmp_path, n=20, epochs=5, objectives=2)
    summary = summarize(study, "memory")
    page = tmp_path / "pareto.html"
    write_html(study, summary, page, study_dir)
    text = page.read_text(encoding="utf-8")
    assert "pareto" in _figures(text) and "<h2 id='pareto-section'>Pareto front</h2>" in text
    assert [c for c in re.findall(r"<th[^>]*>([^<]*)</th>", text)][2:4] == ["val_accuracy", "params"]
    assert text.count("<tr class='pareto'") + text.count("<tr class='best'") == len(summary["pareto"])


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _dump_dom(browser: str, page, profile) -> str:
    # --virtual-time-budget lets the page's asynchronous work (unpacking plotly.js) finish before the dump.
    return subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def test_a_headless_browser_draws_every_plot_and_sorts_the_table(small_page, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser installed")
    page, summary = small_page
    text = page.read_text(encoding="utf-8")
    divs = _plot_divs(text)
    dom = _dump_dom(browser, page, tmp_path / "profile")
    assert f'data-plotted="{len(divs)}"' in dom, "the page's script ran to its end"
    assert re.search(r'id="plotly-error">\s*<', dom), "no error shown"
    for div in divs:
        drawn = re.search(rf'<div class="plot js-plotly-plot" id="{re.escape(div)}"[^>]*>(.{{0,3000}})', dom, re.S)
        assert drawn, f"{div} was not drawn"
        assert "main-svg" in drawn.group(1), f"{div} has no svg"

    # A click on the metric's header sorts the rows by it, a second click reverses them.
    values = {t["number"]: t["value"] for t in summary["trials"]}
    for clicks, descending in ((1, False), (2, True)):
        clicked = tmp_path / f"clicked{clicks}.html"
        click = "document.querySelectorAll('#trials-table th')[2].click();" * clicks
        clicked.write_text(text.replace("</body>", f"<script>{click}</script></body>"), encoding="utf-8")
        order = [int(n) for n in re.findall(r'<tr[^>]* id="trial-(\d+)"', _dump_dom(browser, clicked, tmp_path / "p2"))]
        assert order == sorted(values, key=values.get, reverse=descending)
