"""`tunekit report --html FILE`: one self-contained page (plotly.js inlined once, no server, no
network) with the summary, the advice and Optuna's plots. Needs the `plots` extra. Torch-free."""

from __future__ import annotations

import html
from pathlib import Path

import optuna

from tunekit.errors import DataError
from tunekit.runs import write_text

MAX_PLOTTED = 500  # a slice or parallel-coordinate plot of thousands of trials is tens of MB of HTML


def _plottable(study):
    """The study itself, or an in-memory copy holding its last MAX_PLOTTED finished trials."""

    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    if len(done) <= MAX_PLOTTED:
        return study, None
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(done[-MAX_PLOTTED:])
    return copy, f"plots show the last {MAX_PLOTTED} of {len(done)} finished trials"


def write_html(study, summary: dict, path: Path) -> None:
    try:
        import plotly  # noqa: F401
        from optuna import visualization as vis
    except ImportError:
        raise DataError("--html needs plotly", "pip install 'tunekit[plots]'") from None

    plotted, note = _plottable(study)
    several = len(study.directions) > 1
    first = (lambda t: t.values[0]) if several else None
    name = (summary.get("objectives") or [{"metric": summary["metric"]}])[0]["metric"]
    figures = []
    if several:
        figures.append(
            (
                "Pareto front",
                lambda: vis.plot_pareto_front(plotted, target_names=[o["metric"] for o in summary["objectives"]]),
            )
        )
    figures += [
        ("Optimization history", lambda: vis.plot_optimization_history(plotted, target=first, target_name=name)),
        ("Parameter importance", lambda: vis.plot_param_importances(plotted, target=first, target_name=name)),
        ("Slice: the metric against each parameter", lambda: vis.plot_slice(plotted, target=first, target_name=name)),
        ("Parallel coordinates", lambda: vis.plot_parallel_coordinate(plotted, target=first, target_name=name)),
    ]
    parts, script_included = [], False
    for title, make in figures:
        try:
            fig = make()
        except (ValueError, RuntimeError) as exc:  # e.g. importance needs two or more completed trials
            parts.append(f"<h2>{html.escape(title)}</h2><p><i>not available: {html.escape(str(exc))}</i></p>")
            continue
        parts.append(
            f"<h2>{html.escape(title)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=not script_included)
        )
        script_included = True

    s = summary
    states = ", ".join(f"{n} {k.lower()}" for k, n in s["states"].items() if n)
    best = s.get("best")
    head = [
        f"<h1>Study <code>{html.escape(s['study'])}</code></h1>",
        f"<p>{s['n_trials']} trials ({html.escape(states)}); storage <code>{html.escape(s['storage'])}</code></p>",
    ]
    if best:
        rows = "".join(
            f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(str(v))}</td></tr>"
            for k, v in best["params"].items()
        )
        head.append(
            f"<p><b>Best:</b> trial #{best['number']}, {html.escape(name)} = {html.escape(str(best['value']))}</p><table>{rows}</table>"
        )
    if s.get("reasons"):
        head.append(
            "<p><b>Failures:</b> " + html.escape(", ".join(f"{r} x{n}" for r, n in s["reasons"].items())) + "</p>"
        )
    if s.get("advice"):
        head.append("<h2>Advice</h2><ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in s["advice"]) + "</ul>")
    if note:
        head.append(f"<p><i>{html.escape(note)}</i></p>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>tunekit: " + html.escape(s["study"]) + "</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td{padding:2px 10px;border-bottom:1px solid #ddd}</style></head><body>"
        + "".join(head)
        + "".join(parts)
        + "</body></html>"
    )
    write_text(path, page)
