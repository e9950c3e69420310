"""`tunekit report --html FILE`: one self-contained page (no server, no network) with the summary,
the advice, every trial in a sortable table, each trial's learning curves and Optuna's plots.
Needs the `plots` extra. Torch-free.

What makes such a page heavy, and what this module does about it:
- plotly.js itself (4.8 MB minified) is the bulk: it is embedded once, gzipped and base85-encoded
  (1.8 MB), and unpacked by the browser's own DecompressionStream before the plots are drawn;
- each figure's JSON would carry plotly's theme (7 kB): it is stripped and the theme sent once;
- data are bounded: the plots show the last MAX_PLOTTED finished trials, the curves at most
  MAX_CURVES trials (the best always among them) of at most MAX_EPOCHS points, numbers rounded.
Plots are drawn at the window's width (plotly's responsive config); the slice plot is one small
plot per parameter in a grid that wraps, not one figure 300 px wide per parameter."""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import optuna

from tunekit.errors import DataError
from tunekit.report.formats import short_names
from tunekit.runs import StudyDir, write_text

MAX_PLOTTED = 500  # a slice or parallel-coordinate plot of thousands of trials is tens of MB of HTML
MAX_CURVES = 40  # learning curves overlaid: more is a grey blur, and each costs bytes
MAX_EPOCHS = 200  # points per curve; longer runs are thinned evenly (the last epoch kept)
MAX_TABLE = 2000  # rows in the trials table; the CSV format lists them all
CURVE_KEYS = ("train_loss", "val_loss")

# Python's base85 alphabet (RFC 1924) with the characters that mean something in HTML swapped out,
# so the encoded plotly.js can sit in a <script> element as it is.
_B85 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"
_OURS = _B85.replace(b"&", b",").replace(b"<", b".").replace(b">", b"/").replace(b"`", b":")
_TO_OURS = bytes.maketrans(_B85, _OURS)


_FROM_OURS = bytes.maketrans(_OURS, _B85)


def pack(text: str) -> str:
    """Text as the page embeds it: gzipped, then base85 in an alphabet safe inside HTML."""
    return base64.b85encode(gzip.compress(text.encode(), 9, mtime=0)).translate(_TO_OURS).decode()


def unpack(packed: str) -> str:
    return gzip.decompress(base64.b85decode(packed.encode().translate(_FROM_OURS))).decode()


def embedded(page: str, name: str) -> str:
    """One packed block of a written page, unpacked: "plotly" (plotly.js) or "figures" (their JSON)."""
    found = re.search(rf"<script type='text/plain' id='{name}-packed'>([^<]*)</script>", page)
    if found is None:
        raise ValueError(f"no packed {name} in this page")
    return unpack(found.group(1))


@functools.lru_cache(maxsize=1)
def _packed_plotly() -> str:
    from plotly.offline import get_plotlyjs

    return pack(get_plotlyjs())


def _plottable(study):
    """The study itself, or an in-memory copy holding its last MAX_PLOTTED finished trials."""

    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    if len(done) <= MAX_PLOTTED:
        return study, None
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(done[-MAX_PLOTTED:])
    return copy, f"plots show the last {MAX_PLOTTED} of {len(done)} finished trials"


def _num(value: Any) -> Any:
    """A number as the page needs it: 5 significant digits, and null for NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if not math.isfinite(value):
        return None
    return float(f"{value:.5g}")


def read_curves(path: Path) -> list[dict]:
    """A trial's metrics.jsonl, one dict per epoch; a torn last line (a crash mid-write) is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            out.append(row)
    return out


def _thin(rows: list, bound: int) -> list:
    if len(rows) <= bound:
        return rows
    step = len(rows) / (bound - 1)
    return [rows[int(i * step)] for i in range(bound - 1)] + [rows[-1]]


def _curve_trials(summary: dict) -> list[int]:
    """Which trials' curves are drawn: all, or the best and others spread evenly across the study."""
    numbers = [t["number"] for t in summary["trials"]]
    best = (summary.get("best") or {}).get("number")
    if len(numbers) <= MAX_CURVES:
        return numbers
    others = [n for n in numbers if n != best]
    picked = set(_thin(others, MAX_CURVES - (best is not None)))
    return [n for n in numbers if n in picked or n == best]


def _line(name: str, rows: list[dict], key: str, best: bool, group: str, dash: str | None, color: str) -> dict:
    pts = [(r["epoch"], _num(r.get(key))) for r in rows if key in r]
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "legendgroup": group,
        "x": [p[0] for p in pts],
        "y": [p[1] for p in pts],
        "line": {"width": 3 if best else 1, "color": color, **({"dash": dash} if dash else {})},
        "opacity": 1 if best else 0.45,
        "hovertemplate": f"{name}<br>epoch %{{x}}<br>{key} %{{y}}<extra></extra>",
    }


def _learning_curves(summary: dict, study_dir: StudyDir | None) -> tuple[list[tuple[str, str, Any]], str | None]:
    """Two figures from the trials' metrics.jsonl: the monitored metric, and train/val loss, per
    epoch; every drawn trial in grey, the best trial on top in colour."""
    metric = summary.get("metric") or "val_loss"
    best = (summary.get("best") or {}).get("number")
    curves: dict[int, list[dict]] = {}
    if study_dir is not None:
        for n in _curve_trials(summary):
            rows = read_curves(study_dir.trial_dir(n) / "metrics.jsonl")
            if rows:
                curves[n] = _thin(rows, MAX_EPOCHS)
    title_m, title_l = f"Learning curves: {metric} per epoch", "Learning curves: train and val loss per epoch"
    if not curves:
        why = "no trial's metrics.jsonl was found under this runs folder"
        return [(title_m, "curves-metric", why), (title_l, "curves-loss", why)], None
    # The best trial is drawn last, so that it lies over the others.
    order = sorted(curves, key=lambda n: n == best)
    metric_traces, loss_traces = [], []
    first_other = True
    for n in order:
        rows, is_best = curves[n], n == best
        name = f"trial #{n}" + (" (best)" if is_best else "")
        if is_best:
            metric_traces.append(_line(name, rows, metric, True, "best", None, "#d62728"))
            loss_traces.append(_line(f"{name} train_loss", rows, "train_loss", True, "best-train", "dash", "#1f77b4"))
            loss_traces.append(_line(f"{name} val_loss", rows, "val_loss", True, "best-val", None, "#d62728"))
            continue
        # The other trials: one legend entry per figure, which shows or hides them all (the hover
        # text still names each trial).
        m = _line(name, rows, metric, False, "other", None, "#888")
        losses = [
            _line(f"{name} {k}", rows, k, False, "other", d, "#888")
            for k, d in (("train_loss", "dash"), ("val_loss", None))
        ]
        for t in (m, *losses):
            t["showlegend"] = False
        if first_other:
            m.update(showlegend=True, name="other trials")
            losses[1].update(showlegend=True, name="other trials (train dashed, val solid)")
            first_other = False
        metric_traces.append(m)
        loss_traces += losses
    layout = {
        # whole epochs: a tick each for a few, plotly's own spacing (whole numbers) for more
        "xaxis": {"title": {"text": "epoch"}, **({"dtick": 1} if max(len(r) for r in curves.values()) <= 12 else {})},
        "hovermode": "closest",
        "margin": {"t": 30},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom"},  # above the plot: narrow windows keep its width
    }
    note = None
    if len(curves) < summary["n_trials"]:
        note = f"curves of {len(curves)} of {summary['n_trials']} trials"
        note += " (the best among them)" if best in curves else ""
    figures = [
        (title_m, "curves-metric", {"data": metric_traces, "layout": {**layout, "yaxis": {"title": {"text": metric}}}}),
        (title_l, "curves-loss", {"data": loss_traces, "layout": {**layout, "yaxis": {"title": {"text": "loss"}}}}),
    ]
    return figures, note


def _importance_figure(summary: dict) -> dict | str:
    imp = summary.get("importance") or {}
    if not imp:
        return "needs three or more completed trials with differing parameters"
    keys = list(imp)[::-1]  # most important on top
    return {
        "data": [{"type": "bar", "orientation": "h", "x": [_num(imp[k]) for k in keys], "y": keys}],
        "layout": {
            "xaxis": {"title": {"text": "share of the metric's variance (PED-ANOVA)"}},
            "margin": {"l": 160, "t": 30},
            "height": max(260, 40 + 28 * len(keys)),
        },
    }


def _plotly_dict(fig) -> dict:
    """A plotly Figure as plain JSON, without its theme (sent once for all) or fixed size."""
    import plotly.io as pio

    data = json.loads(pio.to_json(fig, validate=False))
    layout = data.setdefault("layout", {})
    layout.pop("template", None)
    layout.pop("width", None)
    layout["autosize"] = True
    return data


def _table(summary: dict) -> str:
    s = summary
    trials = s["trials"][-MAX_TABLE:]
    names = [o["metric"] for o in s["objectives"]] if s.get("objectives") else [s.get("metric") or "value"]
    keys = sorted({k for t in trials for k in t["params"]})
    short = short_names(keys)
    best = (s.get("best") or {}).get("number")
    pareto = set(s.get("pareto") or [])

    def cell(value: Any) -> str:
        if value is None:
            return "<td></td>"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"<td class=n>{value:.4g}</td>" if isinstance(value, float) else f"<td class=n>{value}</td>"
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        return f"<td>{html.escape(text)}</td>"

    head = ["#", "state", *names, "reason", "duration_s", *(short[k] for k in keys)]
    titles = ["trial number", "state", *names, "why it failed", "seconds", *keys]
    th = "".join(f"<th title='{html.escape(t)} (click to sort)'>{html.escape(h)}</th>" for h, t in zip(head, titles))
    rows = []
    for t in trials:
        values = t["value"] if isinstance(t["value"], list) else [t["value"]] * len(names)
        if t["value"] is None:
            values = [None] * len(names)
        cls = "best" if t["number"] == best else ("pareto" if t["number"] in pareto else "")
        rows.append(
            (f"<tr class='{cls}' id='trial-{t['number']}'>" if cls else f"<tr id='trial-{t['number']}'>")
            + cell(t["number"])
            + f"<td class=s-{t['state'].lower()}>{t['state'].lower()}</td>"
            + "".join(cell(v) for v in values)
            + cell(t["reason"])
            + cell(t["duration_s"])
            + "".join(cell(t["params"].get(k)) for k in keys)
            + "</tr>"
        )
    note = ""
    if len(trials) < len(s["trials"]):
        note = f"<p><i>the last {len(trials)} of {len(s['trials'])} trials; <code>--format csv</code> lists them all</i></p>"
    return (
        f"<h2 id='trials'>Trials</h2><p class='hint'>{len(trials)} trials; click a header to sort"
        + (", the best trial is highlighted" if best is not None else "")
        + f"</p>{note}<div class='scroll'><table class='sortable' id='trials-table'><thead><tr>{th}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;padding:0 1.5em;max-width:1600px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
nav a{margin-right:1em}
table{border-collapse:collapse;font-size:.9em}td,th{padding:2px 10px;border-bottom:1px solid #e4e4e4;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow:auto;max-height:70vh}
table.sortable th{cursor:pointer;position:sticky;top:0;background:#f4f4f4;user-select:none;white-space:nowrap}
table.sortable th[data-dir=asc]::after{content:" \\25B2"}table.sortable th[data-dir=desc]::after{content:" \\25BC"}
tr.best{background:#fde2e2;font-weight:600}tr.pareto{background:#fff4d6}
.s-fail{color:#b00}.s-pruned{color:#777}.hint,.note{color:#666;font-size:.9em}
.plot{width:100%;height:430px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:8px}
.grid .plot{height:340px}
#plotly-error{color:#b00}
"""

# Sorting the table: numbers by their value, text alphabetically, empty cells last.
_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
 var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),asc=th.dataset.dir!=='asc';
 th.parentNode.querySelectorAll('th').forEach(function(h){delete h.dataset.dir});th.dataset.dir=asc?'asc':'desc';
 function key(r){var v=r.cells[i].textContent,n=Number(v);
  return v===''?null:(isNaN(n)?v:n)}
 rows.sort(function(a,b){var x=key(a),y=key(b);if(x===null||y===null)return (x===null)-(y===null);
  var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});
  return asc?c:-c});
 rows.forEach(function(r){tb.appendChild(r)})})});
"""

# Unpack plotly.js (base85, gzip), run it, then draw every figure at the window's width.
_PLOT_JS = """
(async function(){
 var A=%s,m=new Int16Array(128).fill(-1);for(var i=0;i<85;i++)m[A.charCodeAt(i)]=i;
 async function unpack(id){
  var s=document.getElementById(id).textContent.trim(),n=s.length,out=new Uint8Array(Math.ceil(n/5)*4),o=0;
  for(var i=0;i<n;i+=5){var v=0;for(var j=0;j<5;j++)v=v*85+(i+j<n?m[s.charCodeAt(i+j)]:84);
   out[o++]=Math.floor(v/16777216)&255;out[o++]=(v>>>16)&255;out[o++]=(v>>>8)&255;out[o++]=v&255}
  var bytes=out.subarray(0,o-(5-n%%5)%%5);
  return await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text()}
 try{
  var js=await unpack('plotly-packed'),F=JSON.parse(await unpack('figures-packed'));
  var el=document.createElement('script');el.text=js;document.head.appendChild(el);
 }catch(e){document.getElementById('plotly-error').textContent='the plots need a browser that can unpack '+
  'gzip (DecompressionStream: Chrome 80+, Firefox 113+, Safari 16.4+): '+e;return}
 var T=F.template;
 F.figures.forEach(function(f){var d=document.getElementById(f.id);var lay=Object.assign({},f.fig.layout||{},{template:T});
  if(lay.height)d.style.height=lay.height+'px';
  Plotly.newPlot(d,f.fig.data,lay,{responsive:true,displaylogo:false})});
 document.body.dataset.plotted=F.figures.length;
})();
"""


_RGB_NUMBER = re.compile(r"\d+\.\d+")


def _compact(data: Any) -> Any:
    """A figure's JSON with its numbers at 5 significant digits (colours as whole numbers) and no
    NaN: plotly writes every float in full, which is a third of a big study's page for nothing."""
    if isinstance(data, float):
        return _num(data)
    if isinstance(data, str) and data.startswith("rgb"):
        return _RGB_NUMBER.sub(lambda m: str(round(float(m.group()))), data)
    if isinstance(data, dict):
        return {k: _compact(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_compact(v) for v in data]
    return data


def write_html(study, summary: dict, path: Path, study_dir: StudyDir | None = None) -> None:
    try:
        import plotly.io as pio
        from optuna import visualization as vis
    except ImportError:
        raise DataError("--html needs plotly", "pip install 'tunekit[plots]'") from None

    plotted, note = _plottable(study)
    several = len(study.directions) > 1
    first = (lambda t: t.values[0]) if several else None
    name = (summary.get("objectives") or [{"metric": summary["metric"]}])[0]["metric"]
    notes = [note] if note else []

    # (title, div id or ids, a figure dict, a plotly Figure maker, or why it is not available)
    sections: list[tuple[str, Any, Any]] = []
    curves, curves_note = _learning_curves(summary, study_dir)
    if curves_note:
        notes.append(curves_note)
    sections += curves
    if several:
        sections.append(
            (
                "Pareto front",
                "pareto",
                lambda: vis.plot_pareto_front(plotted, target_names=[o["metric"] for o in summary["objectives"]]),
            )
        )
    sections += [
        (
            "Optimization history (best so far)",
            "history",
            lambda: vis.plot_optimization_history(plotted, target=first, target_name=name),
        ),
        ("Parameter importance", "importance", _importance_figure(summary)),
    ]
    params = sorted({p for t in plotted.get_trials(deepcopy=False) for p in t.params})
    sections.append(
        (
            "Slice: the metric against each parameter",
            [f"slice-{i}" for i in range(len(params))],
            [
                (lambda p=p: vis.plot_slice(plotted, params=[p], target=first, target_name=name).update_layout(title=p))
                for p in params
            ]
            or "no parameter was searched",
        )
    )
    sections.append(
        (
            "Parallel coordinates",
            "parallel",
            lambda: vis.plot_parallel_coordinate(plotted, target=first, target_name=name),
        )
    )

    figures, parts = [], []

    def figure(div: str, made: Any) -> str | None:
        try:
            fig = made() if callable(made) else made
        except (ValueError, RuntimeError) as exc:  # e.g. a plot that needs two or more completed trials
            return str(exc)
        if isinstance(fig, str):
            return fig
        figures.append({"id": div, "fig": _compact(fig if isinstance(fig, dict) else _plotly_dict(fig))})
        return None

    for title, div, made in sections:
        anchor = div if isinstance(div, str) else "slice"
        head = f"<h2 id='{anchor}-section'>{html.escape(title)}</h2>"
        if isinstance(made, str):
            parts.append(head + f"<p class='note'><i>not available: {html.escape(made)}</i></p>")
        elif isinstance(div, list):
            cells, missing = [], []
            for d, m in zip(div, made):
                why = figure(d, m)
                if why is None:
                    cells.append(f"<div class='plot' id='{d}'></div>")
                else:
                    missing.append(why)
            parts.append(head + f"<div class='grid'>{''.join(cells)}</div>")
            if missing:
                parts.append(f"<p class='note'><i>not available: {html.escape(missing[0])}</i></p>")
        else:
            why = figure(div, made)
            parts.append(
                head
                + (
                    f"<div class='plot' id='{div}'></div>"
                    if why is None
                    else f"<p class='note'><i>not available: {html.escape(why)}</i></p>"
                )
            )

    s = summary
    states = ", ".join(f"{n} {k.lower()}" for k, n in s["states"].items() if n)
    best = s.get("best")
    goal = (
        ", ".join(f"{o['direction']} {o['metric']}" for o in s["objectives"])
        if s.get("objectives")
        else f"{s['direction']} {s['metric']}"
    )
    head = [
        f"<h1>Study <code>{html.escape(s['study'])}</code></h1>",
        f"<p>{s['n_trials']} trials ({html.escape(states or 'none')}); {html.escape(goal)}; "
        f"storage <code>{html.escape(s['storage'])}</code></p>",
        "<nav><a href='#trials'>trials</a><a href='#curves-metric-section'>learning curves</a>"
        + ("<a href='#pareto-section'>Pareto front</a>" if several else "")
        + "<a href='#history-section'>history</a><a href='#importance-section'>importance</a>"
        "<a href='#slice-section'>slice</a><a href='#parallel-section'>parallel coordinates</a></nav>",
    ]
    if best:
        values = best["value"] if isinstance(best["value"], list) else [best["value"]]
        names = [o["metric"] for o in s["objectives"]] if s.get("objectives") else [name]
        shown = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, values))
        rows = "".join(
            f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(json.dumps(v) if isinstance(v, (list, dict)) else str(v))}</td></tr>"
            for k, v in best["params"].items()
        )
        rule = f" ({html.escape(s['best_rule'])})" if s.get("best_rule") else ""
        head.append(
            f"<p><b>Best:</b> <a href='#trial-{best['number']}'>trial #{best['number']}</a>, {html.escape(shown)}{rule}</p><table>{rows}</table>"
        )
    if s.get("reasons"):
        head.append(
            "<p><b>Failures:</b> " + html.escape(", ".join(f"{r} x{n}" for r, n in s["reasons"].items())) + "</p>"
        )
    if s.get("advice"):
        head.append("<h2>Advice</h2><ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in s["advice"]) + "</ul>")
    if notes:
        head.append("".join(f"<p class='note'><i>{html.escape(n)}</i></p>" for n in notes))

    template = pio.templates[pio.templates.default].to_plotly_json()
    data = json.dumps({"template": _compact(template), "figures": figures}, separators=(",", ":"), allow_nan=False)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<title>tunekit: "
        + html.escape(s["study"])
        + "</title><style>"
        + _STYLE
        + "</style></head><body>"
        + "".join(head)
        + "<p id='plotly-error'></p>"
        + _table(s)
        + "".join(parts)
        + f"<script type='text/plain' id='figures-packed'>{pack(data)}</script>"
        + f"<script type='text/plain' id='plotly-packed'>{_packed_plotly()}</script>"
        + "<script>"
        + _SORT_JS
        + (_PLOT_JS % json.dumps(_OURS.decode()))
        + "</script></body></html>"
    )
    write_text(path, page)
