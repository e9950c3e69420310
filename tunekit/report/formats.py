"""Turning summaries into text: rich tables for people, JSON/CSV/markdown for pipelines. Torch-free."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tunekit.report.advice import sparkline


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _say(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print one line of user data as it is: whatever the console's settings, no `[...]` is read as
    markup and no `:name:` as an emoji (a study's values, paths and hints are printed literally)."""
    console.print(Text.assemble(*parts))


def _cells(*values: str) -> list[Text]:
    return [Text(v) for v in values]


def short_names(keys: list[str]) -> dict[str, str]:
    """'optimizer.lr' -> 'lr' where the last part is unique, so tables fit a terminal."""
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (t if tails.count(t) == 1 else k) for k, t in zip(keys, tails)}


def _ranked(summary: dict) -> list[dict]:
    """Completed trials best first; with several objectives, the Pareto front ordered by the first."""
    if "pareto" in summary:
        front = [t for t in summary["trials"] if t["number"] in summary["pareto"]]
        return sorted(front, key=lambda t: t["value"][0], reverse=summary["direction"][0] == "maximize")
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE" and isinstance(t["value"], (int, float))]
    return sorted(done, key=lambda t: t["value"], reverse=summary["direction"] == "maximize")


def _objective_names(summary: dict) -> list[str]:
    return [o["metric"] for o in summary["objectives"]] if summary.get("objectives") else [summary["metric"]]


def _column_width(header: str, cells: list[str]) -> int:
    return max(len(header), *(len(c) for c in cells)) + 3  # a space each side and the separator


def _fitting_tables(console: Console, title: str, fixed: list[str], params: list[str], rows: list[list[str]]) -> None:
    """The trials table at the console's width: the trial number and the metrics always, then as many
    parameter columns as fit; the rest go to further tables, each again led by the trial number."""
    n_fixed = len(fixed)
    widths = [_column_width(h, [r[i] for r in rows]) for i, h in enumerate(fixed + params)]
    lead = widths[0] + sum(widths[1 : n_fixed - 2])  # '#' and the metric(s) start every table
    room = console.width - sum(widths[:n_fixed])
    groups: list[list[int]] = [[]]
    used = 0
    for i in range(n_fixed, n_fixed + len(params)):
        if groups[-1] and used + widths[i] > room:
            groups.append([])
            used, room = 0, console.width - lead
        groups[-1].append(i)
        used += widths[i]
    for g, group in enumerate(groups):
        columns = list(range(n_fixed)) if g == 0 else [0, *range(1, n_fixed - 2)]
        table = Table(title=title if g == 0 else None, show_edge=False)
        for i in columns:
            table.add_column((fixed + params)[i], justify="right", no_wrap=True)
        for i in group:
            table.add_column((fixed + params)[i], no_wrap=True)
        for row in rows:
            table.add_row(*_cells(*(row[i] for i in columns + group)))
        console.print(table)


def report_table(summary: dict, console: Console, top: int = 10) -> None:
    s = summary
    states = ", ".join(f"{n} {k.lower()}" for k, n in s["states"].items() if n)
    goal = (
        ", ".join(f"{o['direction']} {o['metric']}" for o in s["objectives"])
        if s.get("objectives")
        else f"{s['direction']} {s['metric']}"
    )
    _say(console, (s["study"], "bold"), f"  {s['n_trials']} trials ({states or 'none'})  {goal}")
    if s.get("pruning"):
        _say(console, f"pruning: {s['pruning']}")
    if s.get("reasons"):
        _say(console, "failures: " + ", ".join(f"{r} x{n}" for r, n in s["reasons"].items()))
    cut = [t["number"] for t in s.get("trials", []) if t.get("cut_short")]
    if cut:
        shown = ", ".join(f"#{n}" for n in cut[:8]) + (f" and {len(cut) - 8} more" if len(cut) > 8 else "")
        _say(console, f"cut short by --timeout: {len(cut)} (complete with their best epoch so far: {shown})")
    best = s.get("best")
    if best:
        values = best["value"] if isinstance(best["value"], list) else [best["value"]]
        shown = ", ".join(f"{n} = {v:.4g}" for n, v in zip(_objective_names(s), values))
        rule = f"  ({s['best_rule']}; `tunekit train --best --pick N` takes another)" if s.get("best_rule") else ""
        _say(console, f"best: trial #{best['number']}  {shown}{rule}")
        for k, v in best["params"].items():
            _say(console, f"  {k} = {_fmt(v)}")
    ranked = _ranked(s)[:top]
    if ranked:
        keys = sorted({k for t in ranked for k in t["params"]})
        short = short_names(keys)
        title = f"Pareto front ({len(ranked)} trials)" if "pareto" in s else f"top {len(ranked)} trials"
        fixed = ["#", *_objective_names(s), "epoch", "time_s"]
        rows = []
        for t in ranked:
            values = t["value"] if isinstance(t["value"], list) else [t["value"]]
            rows.append(
                [
                    str(t["number"]),
                    *(_fmt(v) for v in values),
                    _fmt(t.get("best_epoch")),
                    _fmt(t["duration_s"]),
                    *(_fmt(t["params"].get(k)) for k in keys),
                ]
            )
        _fitting_tables(console, title, fixed, [short[k] for k in keys], rows)
        legend = [f"{short[k]} = {k}" for k in keys if short[k] != k]
        if legend:
            _say(console, "columns: " + ", ".join(legend))
    if s.get("history"):
        # JSON keeps the numbers (best so far after each completed trial); people get a sparkline.
        history = s["history"]
        if isinstance(history, list):
            first = s["direction"][0] if isinstance(s["direction"], list) else s["direction"]
            history = sparkline(history, first == "maximize")
        _say(console, f"best so far, trial by trial: {history}")
    if s.get("importance"):
        _say(console, "parameter importance (share of the metric's variance):")
        width = max(len(k) for k in s["importance"])
        for k, v in s["importance"].items():
            _say(console, f"  {k:<{width}}  {'█' * max(1, round(v * 30)):<30} {v:.2f}")
    if s.get("advice"):
        _say(console, "advice:")
        for line in s["advice"]:
            _say(console, f"  - {line}")


def report_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, default=str)


def report_csv(summary: dict) -> str:
    keys = sorted({k for t in summary["trials"] for k in t["params"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", "value", "reason", "duration_s", *keys])
    for t in summary["trials"]:
        writer.writerow(
            [
                t["number"],
                t["state"],
                "" if t["value"] is None else t["value"],
                t["reason"] or "",
                "" if t["duration_s"] is None else t["duration_s"],
                *(_csv_value(t["params"].get(k)) for k in keys),
            ]
        )
    return out.getvalue()


def _csv_value(v: Any) -> str:
    if isinstance(v, (list, dict)):
        return json.dumps(v)  # a list choice as its YAML/JSON text, e.g. [256, 256]
    return "" if v is None else str(v)


def report_markdown(summary: dict, top: int = 10) -> str:
    s = summary
    lines = [
        f"## Study `{s['study']}`",
        "",
        f"{s['n_trials']} trials: "
        + ", ".join(f"{n} {k.lower()}" for k, n in s["states"].items() if n)
        + f"; {s['direction']} `{s['metric']}`.",
        "",
    ]
    names = _objective_names(s)
    if s.get("best"):
        values = s["best"]["value"] if isinstance(s["best"]["value"], list) else [s["best"]["value"]]
        lines += [
            f"**Best:** trial #{s['best']['number']}, " + ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, values)),
            "",
        ]
    ranked = _ranked(s)[:top]
    if ranked:
        keys = sorted({k for t in ranked for k in t["params"]})
        lines.append("| # | " + " | ".join(names + keys) + " |")
        lines.append("|---|" + "---|" * (len(names) + len(keys)))
        for t in ranked:
            values = t["value"] if isinstance(t["value"], list) else [t["value"]]
            lines.append(
                f"| {t['number']} | "
                + " | ".join([_fmt(v) for v in values] + [_fmt(t["params"].get(k)) for k in keys])
                + " |"
            )
        lines.append("")
    if s.get("importance"):
        lines += (
            ["| parameter | importance |", "|---|---|"]
            + [f"| {k} | {v:.2f} |" for k, v in s["importance"].items()]
            + [""]
        )
    if s.get("advice"):
        lines += ["**Advice**", ""] + [f"- {a}" for a in s["advice"]] + [""]
    return "\n".join(lines)


def train_table(result: dict, console: Console) -> None:
    stopped = result.get("stopped")
    how = (
        f"stopped at epoch {stopped['epoch']} by {stopped['reason']}: {stopped['detail']}"
        if stopped
        else f"best epoch {result.get('best_epoch')}"
    )
    _say(
        console,
        f"trained {result['epochs']} epochs on {result['device']} in {result['duration_s']:.1f}s ({how})",
    )
    table = Table(show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result["metrics"].items():
        table.add_row(*_cells(k, "–" if v is None else f"{v:.4f}"))
    if result["metrics"]:
        console.print(table)
    if "seeds" in result:
        stats = result["seed_stats"]
        line = f"test metrics over {stats['completed']} of {len(stats['seeds'])} seeds (mean ± std)"
        if stats["stopped"]["count"]:
            reasons = ", ".join(f"{r} ×{n}" for r, n in stats["stopped"]["reasons"].items())
            line += f"; stopped: {reasons}"
        _say(console, line + ":")
        for k, v in stats["metrics"].items():
            if k.startswith("test_"):
                _say(console, f"  {k} = {v['mean']:.4f} ± {v['std']:.4f}")
    if result.get("checkpoint"):
        _say(console, f"checkpoint: {result['checkpoint']}")
    else:
        _say(console, f"no checkpoint written; history: {result['history']}")


def text_plot(xs: list[float], ys: list[float], width: int = 60, height: int = 12, mark: float | None = None) -> str:
    """A log-x line plot in text, for terminals: the lr-find curve."""

    if not xs:
        return ""
    lx = [math.log10(x) for x in xs]
    x0, x1 = min(lx), max(lx)
    y0, y1 = min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    for x, y in zip(lx, ys):
        col = int((x - x0) / ((x1 - x0) or 1) * (width - 1))
        row = height - 1 - int((y - y0) / ((y1 - y0) or 1) * (height - 1))
        grid[row][col] = "•"
    if mark is not None:
        col = int((math.log10(mark) - x0) / ((x1 - x0) or 1) * (width - 1))
        for row in grid:
            if row[col] == " ":
                row[col] = "│"
    lines = (
        [f"{y1:9.3g} ┤" + "".join(grid[0])]
        + ["          │" + "".join(r) for r in grid[1:-1]]
        + [f"{y0:9.3g} ┤" + "".join(grid[-1])]
    )
    lines.append("          └" + "─" * width)
    lines.append(f"           {xs[0]:<.0e}" + " " * max(1, width - 14) + f"{xs[-1]:.0e}  (lr, log scale)")
    return "\n".join(lines)
