"""The `tunekit` command line: parse, call one function, render.

Only typer, rich and tunekit's torch-free modules are imported at start-up, so `tunekit --help`
and shell completion stay fast; each command imports the heavy parts it needs when it runs.
Data goes to stdout, progress and errors to stderr; `_guarded` maps every error to SPEC §5's code.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tunekit import __version__  # the package root imports nothing heavy: --version stays fast
from tunekit.errors import TunekitError, os_error
from tunekit.signals import Terminated, as_exceptions

app = typer.Typer(
    name="tunekit",
    help="Hyperparameter search for PyTorch training, driven by one YAML file.\n\n"
    "Example: tunekit search configs/quickstart.yaml && tunekit train --best && tunekit report",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


class _Console(Console):
    """rich's Console, minus two habits that do not suit a CLI printing user data.

    Markup and emoji codes are off: study names, paths, param values and hints are printed as
    they are (`pip install 'tunekit[plots]'` keeps its `[plots]`); styling goes through Text.
    A closed pipe raises BrokenPipeError for `_guarded` to handle (rich's own handler exits 1)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "the reader closed the pipe")


def _console(stderr: bool = False, wide: bool = False) -> Console:
    # Colour only on a terminal (rich honours NO_COLOR); off a terminal, don't wrap tables at 80
    # columns unless COLUMNS says so (a script that sets it wants that width).
    plain = {"stderr": stderr, "highlight": False, "markup": False, "emoji": False}
    console = _Console(**plain)
    if wide:
        console = _Console(**plain, width=100_000)
    elif not console.is_terminal and not os.environ.get("COLUMNS"):
        console = _Console(**plain, width=200)
    return console


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _reader_left() -> None:
    """The reader of stdout went away (`tunekit report | head -1`): that is not an error. Point stdout
    at /dev/null so that the interpreter's final flush has somewhere to go, and exit 0 in silence."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout already closed or not a real file: nothing left to flush
    raise SystemExit(0)


def _closed_pipe(exc: BaseException) -> bool:
    """An EPIPE because our own stdout or stderr lost its reader, not one from a pipe to a worker."""
    if not (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
        return False
    try:
        poll = select.poll()
        for stream in (sys.stdout, sys.stderr):
            poll.register(stream.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):
        return True  # no poll() here, or not real files: trust the error
    # The write end of a pipe whose reader has gone reports POLLERR (a socket, POLLHUP).
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))


def _guarded(fn: Callable) -> Callable:
    """Run a command; turn tunekit errors, interrupts and closed pipes into exit codes and one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with as_exceptions():
                return fn(*args, **kwargs)
        except TunekitError as exc:
            for line in exc.lines():
                _err(f"error: {line}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            code = 143 if isinstance(exc, Terminated) else 130
            _err(f"interrupted ({'SIGTERM' if code == 143 else 'SIGINT'}); the study is saved")
            resume = _state.get("resume")  # set by `search` once it knows the study name
            if resume:
                _err(f"resume with: {resume}")
            raise typer.Exit(code) from None
        except OSError as exc:
            if _closed_pipe(exc):
                _reader_left()
            known = os_error(exc)
            if known is None:
                if _state["debug"]:
                    raise
                _err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
                raise typer.Exit(1) from None
            for line in known.lines():
                _err(f"error: {line}")
            raise typer.Exit(known.exit_code) from None
        except typer.Exit:
            raise
        except Exception as exc:
            lost = _storage_lost(exc)
            if lost is not None and not _state["debug"]:
                for line in lost.lines():
                    _err(f"error: {line}")
                raise typer.Exit(lost.exit_code) from None
            if _state["debug"]:
                raise
            _err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


def _storage_lost(exc: Exception):
    """The one-line error for a study database lost mid-command (study/storage.py decides), else None.
    Only a command that opened a database has imported sqlalchemy; no other pays for the check."""
    if "sqlalchemy" not in sys.modules:
        return None
    from tunekit.study.storage import storage_lost

    return storage_lost(exc)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"tunekit {__version__}\n")
        sys.stdout.flush()
        raise typer.Exit(0)


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for internal errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print tunekit's version and exit."),
    ] = False,
) -> None:
    _state["debug"] = debug
    if debug:
        os.environ["TUNEKIT_DEBUG"] = "1"


ConfigArg = Annotated[str, typer.Argument(help="Config YAML file, or - to read it from stdin.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one value: KEY=VALUE (YAML), e.g. optimizer.lr=3e-4. Repeatable."),
]


RunsOpt = Annotated[Path, typer.Option("--runs", help="Folder that holds the studies.")]
StudyOpt = Annotated[
    str | None, typer.Option("--study", help="Study name (default: the config's name, else the file stem).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
TrackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        help="Log runs to mlflow[:DIR|URI] or tensorboard[:DIR] (repeatable; needs pip install 'tunekit[mlflow]' "
        "or 'tunekit[tensorboard]'). Relative paths: from the working directory. See README, Tracking.",
        show_default=False,
    ),
]
PluginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-plugin",
        help="Allow data/model plugins (pkg.module:fn) from this package; importing runs its code. Repeatable.",
    ),
]


def _parse_timeout(text: str | None) -> float | None:
    if text is None:
        return None
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        from tunekit.errors import UsageError

        raise UsageError(f"--timeout '{text}' is not a duration", "e.g. 90s, 30m, 2h")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < seconds <= 366 * 86400:
        from tunekit.errors import UsageError

        raise UsageError(f"--timeout '{text}' must be more than 0 and at most 366d", "omit --timeout for no limit")
    return seconds


def _parse_devices(text: str | None) -> list[str] | None:
    """--devices: None keeps train.device; auto = every visible GPU, else cpu. Only the spelling is
    checked here (without torch); whether the devices exist is checked before the study is touched
    (tunekit.train.build.checked_devices)."""
    if text is None:
        return None
    import re

    devices = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", d)]
    if not devices or bad or ("auto" in devices and len(devices) > 1):
        from tunekit.errors import UsageError

        raise UsageError(
            f"--devices '{text}' is not a device list", "e.g. --devices cpu, --devices cuda:0,cuda:1, --devices auto"
        )
    return devices


def _print_json(data) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


@app.command()
@_guarded
def search(
    config: ConfigArg,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Total trials for the study (across restarts).")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Stop starting trials after this long, e.g. 30m.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes sharing the study on this machine.")
    ] = 1,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices", help="cpu, cuda:0,cuda:1 (one per worker, round-robin) or auto (all visible GPUs, else cpu)."
        ),
    ] = None,
    study: StudyOpt = None,
    runs: RunsOpt = Path("runs"),
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Database URL instead of runs/<study>/optuna.journal (postgresql://, mysql://). "
            "An unreachable, silent or lost database ends the command with exit 4 within "
            "TUNEKIT_STORAGE_TIMEOUT seconds (default 10; a statement may take 6x).",
        ),
    ] = None,
    set_: SetOpt = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Archive the existing study and start anew.")] = False,
    warm_start: Annotated[
        str | None,
        typer.Option("--warm-start", help="A new study first reruns the 5 best trials of this study (same --runs)."),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Back up the journal and mend it: add a missing final newline, set aside torn or corrupt lines.",
        ),
    ] = False,
    allow_data_change: Annotated[
        bool,
        typer.Option(
            "--allow-data-change",
            help="Resume even though the data file changed since the study started (its new fingerprint is kept).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Validate, show the space and a sampled trial, run one batch forward/backward; write nothing.",
        ),
    ] = False,
    json_: JsonOpt = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Print nothing but errors (with --json, the JSON document too).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Also a line per epoch of every trial (above the live view).")
    ] = False,
    track: TrackOpt = None,
    allow_plugin: PluginOpt = None,
) -> None:
    """Run or resume an Optuna study: each trial trains a model from the config plus sampled values.

    On a terminal a live view shows trials done, the running trials, the best so far, elapsed
    time, ETA and failures; piped, or under NO_COLOR or TERM=dumb, one line per trial.

    Rerunning the same command resumes the study; --trials is the study's total. With
    --set study.population=8, trials that share an architecture train 8 at a time as one
    vectorized model (each still its own trial; see README, "Population training").

    Example: tunekit search configs/quickstart.yaml --trials 30 --set train.epochs=10

    Tracked: tunekit search configs/quickstart.yaml --track mlflow:./mlruns --track tensorboard
    """
    from tunekit.config.sections import allow_plugins
    from tunekit.errors import UsageError
    from tunekit.study.options import SearchOptions, max_workers, study_name_for
    from tunekit.track.specs import parse_track

    if workers > max_workers():
        raise UsageError(
            f"--workers {workers} is more than this machine can use (at most {max_workers()}: 4 per core, 256 in all)",
            "use fewer workers here, or start `tunekit search` on more machines with a shared --storage",
        )
    allow_plugins(allow_plugin)
    track_specs = parse_track(track)
    source = _read_config_first(config)
    device_list = _parse_devices(devices)
    if dry_run:
        from tunekit.study.preflight import load_checked, preflight
        from tunekit.train.build import checked_devices

        cfg = load_checked(source, set_)
        device_list = checked_devices(device_list) if device_list else None
        info = preflight(cfg, step=True, device=device_list[0] if device_list else None)
        if json_:
            _print_json(info)
        else:
            _render_preflight(config, info)
        return
    opts = SearchOptions(
        runs=runs,
        study=study,
        trials=trials,
        timeout_s=_parse_timeout(timeout),
        storage=storage,
        device=device_list[0] if device_list else None,
        devices=device_list,
        workers=workers,
        fresh=fresh,
        warm_start=warm_start,
        repair=repair,
        allow_data_change=allow_data_change,
        quiet=quiet,
        verbose=verbose and not quiet,
        config_name=None if config == "-" else Path(config).stem,
        track=track_specs,
        log=(lambda line: None) if quiet else _err,
    )
    if workers > 1:  # worker 0 validates the config while the others start: this process never loads torch
        from tunekit.config.load import declared_name
        from tunekit.study.workers import search_in_workers

        name = study_name_for(declared_name(source, set_), opts)

        def run() -> dict:
            return search_in_workers(source, set_ or [], opts)
    else:
        from tunekit.study.preflight import load_checked
        from tunekit.study.search import run_search

        cfg = load_checked(source, set_)
        name = study_name_for(cfg.name, opts)

        def run() -> dict:
            return run_search(cfg, opts)

    # The command that continues this study: the same overrides (a changed config is refused) and workers.
    resume = ["tunekit", "search", config, "--study", name, "--runs", str(runs)]
    if trials:
        resume += ["--trials", str(trials)]
    for pair in set_ or []:
        resume += ["--set", pair]
    for text in track or []:
        resume += ["--track", text]
    if workers > 1:
        resume += ["--workers", str(workers)]  # a database study is found again through runs/<study>/storage.url
    _state["resume"] = shlex.join(resume)
    from tunekit.report import live

    if live.wanted(quiet, json_):
        with live.LiveView(_console(stderr=True), workers, opts.timeout_s, started_at=opts.started_at) as view:
            opts.log, opts.events = view.note, view.handle
            summary = run()
    else:
        summary = run()
    if json_:
        _print_json(summary)
    elif not quiet:  # -q: nothing but errors (and --json's document)
        from tunekit.report.formats import report_table

        report_table(summary, _console(), top=5)
        if summary["states"]["COMPLETE"]:
            _err(f"next: tunekit train --best --study {name}" + (f" --runs {runs}" if str(runs) != "runs" else ""))
        else:  # `train --best` would find nothing to train: the command that helps is the one that continues
            _err(f"no trial completed yet; to continue: {_state['resume']}")


@app.command()
@_guarded
def train(
    config: Annotated[
        str | None,
        typer.Argument(help="A config to train (its base values), or omit with --best.", show_default=False),
    ] = None,
    best: Annotated[
        bool, typer.Option("--best", help="Train the best trial of --study (default: the most recent study).")
    ] = False,
    study: Annotated[str | None, typer.Option("--study", help="Study whose best trial to train.")] = None,
    runs: RunsOpt = Path("runs"),
    storage: Annotated[str | None, typer.Option("--storage", help="Database URL the study lives in.")] = None,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds", min=1, help="Train K times with different seeds; report mean ± std of each test metric."
        ),
    ] = 1,
    pick: Annotated[
        int | None,
        typer.Option(
            "--pick", min=0, help="With --best: train this completed trial instead (e.g. another Pareto-front member)."
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Train this many epochs instead of train.epochs.")
    ] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    diagnostics: Annotated[
        str,
        typer.Option(
            "--diagnostics",
            help="on: stop a run whose gradients explode or vanish (exit 6, history kept); off: train through. "
            "A NaN/inf loss always stops.",
        ),
    ] = "on",
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="One line per epoch on stderr.")] = False,
    track: TrackOpt = None,
    allow_plugin: PluginOpt = None,
) -> None:
    """Train one config to the end, evaluate the held-out test split, save the model.

    --best retrains a study's winner with its own seed into runs/<study>/best/. A run stopped by a
    diagnostic (exploding or vanishing gradients, NaN loss) prints the reason and the epoch, keeps
    the history of the epochs that ran, and exits 6.

    With --track mlflow, `train --best` is a run `best` under the study's parent run, with
    model.pt as its artifact; `train CONFIG` is a run `train` in an experiment named after the config.

    Example: tunekit train --best --study quickstart --epochs 40
    """
    from tunekit.config.load import parse_overrides
    from tunekit.config.sections import allow_plugins
    from tunekit.errors import UsageError
    from tunekit.runs import StudyDir, chosen_study
    from tunekit.track.specs import parse_track

    allow_plugins(allow_plugin)
    track_specs = parse_track(track)
    log = _err if verbose else (lambda line: None)
    if diagnostics not in ("on", "off"):
        raise UsageError(f"--diagnostics {diagnostics!r}: expected on or off", "e.g. --diagnostics off")
    if best == (config is not None):
        raise UsageError("give either a CONFIG or --best", "e.g. tunekit train --best, or tunekit train config.yaml")
    source = None if best else _read_config_first(config)
    from tunekit.study.retrain import best_config, train_seeds, train_tracking, variant_label
    from tunekit.study.trial import trial_seed

    if best:
        study_dir = chosen_study(runs, study)
        cfg, number, shuffle_seed = best_config(study_dir, storage, pick)
        if set_:
            from tunekit.config.load import validate_document
            from tunekit.config.yaml_io import Document

            cfg = validate_document(Document(cfg.raw, {}, cfg.source), parse_overrides(set_))
        # best/ belongs to the study's winner as searched; a variant (--pick, --epochs, --set) gets its own folder.
        label = variant_label(pick, epochs, set_)
        out = study_dir.best_dir if label is None else study_dir.sub("train", label)
        _err(
            f"training {'trial' if pick is not None else 'the best trial'} #{number} of study '{study_dir.name}'"
            + (f" into {out}/" if label else "")
        )
        with train_tracking(cfg, track_specs, study_dir, nested=True) as tracking:
            result = train_seeds(
                cfg,
                out,
                first_seed=trial_seed(cfg.seed, number),
                seeds=seeds,
                epochs=epochs,
                log=log,
                first_shuffle_seed=shuffle_seed,
                diagnostics=diagnostics == "on",
                tracking=tracking,
                track_as=(label or "best", number),
            )
    else:
        from tunekit.study.preflight import load_checked

        cfg = load_checked(source, set_)
        name = cfg.name or (Path(config).stem if config != "-" else "config")
        study_dir = StudyDir(runs, name)
        out = study_dir.sub("train")
        with train_tracking(cfg, track_specs, study_dir, nested=False) as tracking:
            result = train_seeds(
                cfg,
                out,
                first_seed=cfg.seed,
                seeds=seeds,
                epochs=epochs,
                log=log,
                diagnostics=diagnostics == "on",
                tracking=tracking,
            )
    if json_:
        _print_json(result)
    else:
        from tunekit.report.formats import train_table

        train_table(result, _console())
    _raise_if_stopped(result)


def _raise_if_stopped(result: dict) -> None:
    """Exit 6 once the outcome is printed, when a diagnostic stopped the run or any of its seeds."""
    from tunekit import reasons
    from tunekit.errors import TrainStopped

    stopped = [r["stopped"] for r in result.get("seeds", [result]) if "stopped" in r]
    if not stopped:
        return
    first = stopped[0]
    hint = f"try {reasons.REMEDY[first['reason']]}"
    if first["reason"] != reasons.NONFINITE_LOSS:
        hint += "; --diagnostics off trains through"
    if "seeds" not in result:
        raise TrainStopped(f"training stopped at epoch {first['epoch']}: {first['reason']}: {first['detail']}", hint)
    counts = ", ".join(f"{reason} ×{n}" for reason, n in result["seed_stats"]["stopped"]["reasons"].items())
    raise TrainStopped(f"{len(stopped)} of {len(result['seeds'])} seeds stopped by a diagnostic: {counts}", hint)


@app.command()
@_guarded
def report(
    study: Annotated[
        str | None, typer.Argument(help="Study name (default: the most recent under --runs).", show_default=False)
    ] = None,
    runs: RunsOpt = Path("runs"),
    storage: Annotated[str | None, typer.Option("--storage", help="Database URL the study lives in.")] = None,
    format_: Annotated[str, typer.Option("--format", help="table, json, csv or markdown.")] = "table",
    top: Annotated[
        int,
        typer.Option(
            "--top",
            min=1,
            help="How many of the best trials the table and markdown list (JSON and CSV hold every trial).",
        ),
    ] = 10,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML page with plots (needs tunekit[plots])."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json: one JSON document on stdout.")] = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="One table however wide (default: fit the terminal, overflow below).")
    ] = False,
) -> None:
    """Show what a study learned: best trial, top trials, failures and parameter importance.

    Example: tunekit report quickstart --json | jq .best
    """
    from tunekit.errors import UsageError
    from tunekit.report.formats import report_csv, report_json, report_markdown, report_table
    from tunekit.report.summary import summarize
    from tunekit.runs import chosen_study
    from tunekit.study.storage import describe_storage, load_study

    formats = ("table", "json", "csv", "markdown")
    if json_:
        if format_ not in ("table", "json"):  # table is the default: --json alone means json
            raise UsageError(f"--json and --format {format_} ask for two formats", "give one of them")
        format_ = "json"
    if format_ not in formats:
        from tunekit.registry import did_you_mean

        raise UsageError(
            f"unknown --format '{format_}'", did_you_mean(format_, formats) or f"choose one of: {', '.join(formats)}"
        )
    study_dir = chosen_study(runs, study)
    loaded = load_study(study_dir, storage)
    summary = summarize(loaded, describe_storage(study_dir, storage))
    if html_file is not None:
        from tunekit.report.html import write_html

        write_html(loaded, summary, html_file, study_dir)
        _err(f"wrote {html_file}")
    if format_ == "table":
        report_table(summary, _console(wide=wide), top=top)
    else:
        text = {"json": report_json, "csv": report_csv, "markdown": lambda s: report_markdown(s, top)}[format_](summary)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


@app.command()
@_guarded
def validate(
    config: ConfigArg,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    allow_plugin: PluginOpt = None,
) -> None:
    """Check a config and list every problem at once; nothing is trained or written.

    With --json, stdout is one document either way: the description below, or (exit 3)
    {"valid": false, "problems": [{"path", "line", "message", "hint"}, ...]}.

    Example: tunekit validate configs/quickstart.yaml
    """
    from tunekit.config.sections import allow_plugins
    from tunekit.errors import ConfigError

    allow_plugins(allow_plugin)
    try:
        source = _read_config_first(config)
        from tunekit.study.preflight import load_checked, preflight

        info = preflight(load_checked(source, set_))
    except ConfigError as exc:
        if json_:  # a script reading `validate --json | jq .valid` gets its answer, and the problems
            problems = [{"path": p.path, "line": p.line, "message": p.message, "hint": p.hint} for p in exc.problems]
            _print_json({"valid": False, "source": exc.source, "problems": problems})
        raise
    if json_:
        _print_json(info)
    else:
        _render_preflight(config, info)


def _read_config_first(path: str):
    """The config file read and parsed before a command imports torch (~3 s here), so a missing
    file or a YAML slip is said at once."""
    from tunekit.config.load import read_config

    return read_config(path)


def _render_preflight(config: str, info: dict) -> None:
    from tunekit.config.yaml_io import dump_yaml

    out = _console()
    goal = (
        ", ".join(f"{o['direction']} {o['metric']}" for o in info["objectives"])
        if info.get("objectives")
        else f"{info['direction']} {info['metric']}"
    )
    out.print(f"{config}: valid; {goal}; model has {info['params']:,} parameters")
    out.print(_data_line(info["data"]))
    for p in info["space"]:
        out.print(f"  {p['key']:<28} {p['type']:<12} {p['range']}")
    if info["space"]:
        out.print(f"  search space size: {info['space_size'] if info['space_size'] else 'continuous'}")
        out.print("one sampled trial config:")
        out.print("  " + dump_yaml(info["sample"]).rstrip().replace("\n", "\n  "), markup=False)
    if "dry_run" in info:
        d = info["dry_run"]
        out.print(
            f"dry run: one step on a batch of {d['batch']} on {d['device']}: loss {d['loss']:.4f} in {d['seconds'] * 1000:.1f} ms; nothing written"
        )


def _data_line(data: dict, most: int = 8, width: int = 72) -> str:
    """`data: csv houses.csv: regression (inferred); 3 feature columns: rooms, area, age; rows train/val/test 180/60/60`."""
    from tunekit.components.data import shown_path

    where = f"{data['name']} {shown_path(data['path'])}" if data.get("path") else data["name"]
    task = data["task"] + (" (inferred)" if data.get("task_from") == "inferred" and data.get("path") else "")
    if data["n_classes"]:
        task += f", {data['n_classes']} classes"
    names = data.get("feature_columns")
    if names:
        shown = [names[0]]  # up to `most` names in about `width` characters, then how many more
        for name in names[1:most]:
            if len(", ".join([*shown, name])) > width:
                break
            shown.append(name)
        listed = ", ".join(shown) + (f", ... (+{len(names) - len(shown)} more)" if len(names) > len(shown) else "")
        features = f"{len(names)} feature column{'s' * (len(names) != 1)}: {listed}"
    else:
        features = f"{data['n_features']} features"
    rows = data["rows"]
    return f"data: {where}: {task}; {features}; rows train/val/test {rows['train']}/{rows['val']}/{rows['test']}"


@app.command("list")
@_guarded
def list_(
    runs: RunsOpt = Path("runs"),
    json_: JsonOpt = False,
) -> None:
    """List the studies under --runs with their trial counts and best value.

    Example: tunekit list --runs runs
    """
    from rich.table import Table

    from tunekit.errors import TunekitError
    from tunekit.report.summary import summarize
    from tunekit.runs import StudyDir, list_studies
    from tunekit.study.liveness import live_workers
    from tunekit.study.storage import describe_storage, load_study

    rows = []
    for path in list_studies(runs):
        try:
            d = StudyDir(runs, path.name)
            study = load_study(d)
            s = summarize(study, describe_storage(d, None))
        except TunekitError as exc:  # one unreadable folder (a copy, a torn journal) hides no other study
            rows.append({"study": path.name, "error": exc.message[:200]})
            continue
        rows.append(
            {
                "study": s["study"],
                "n_trials": s["n_trials"],
                "states": s["states"],
                "metric": s["metric"],
                "best": s["best"]["value"] if s["best"] else None,
                "running_workers": live_workers(study),
            }
        )
    if json_:
        _print_json(rows)
        return
    table = Table(show_edge=False)
    for col in ("study", "trials", "complete", "failed", "metric", "best", "running"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["study"], "-", "-", "-", "-", "-", "unreadable")
            continue
        best = "-" if r["best"] is None else (f"{r['best']:.4f}" if isinstance(r["best"], float) else str(r["best"]))
        running = f"{len(r['running_workers'])} worker(s)" if r["running_workers"] else "-"
        table.add_row(
            r["study"],
            str(r["n_trials"]),
            str(r["states"]["COMPLETE"]),
            str(r["states"]["FAIL"]),
            str(r["metric"]),
            best,
            running,
        )
    _console().print(table)
    for r in rows:
        if "error" in r:
            _err(f"note: {r['study']}: {r['error']}")


@app.command()
@_guarded
def stop(
    study: Annotated[str, typer.Argument(help="The study to stop.", show_default=False)],
    runs: RunsOpt = Path("runs"),
    storage: Annotated[str | None, typer.Option("--storage", help="Database URL the study lives in.")] = None,
) -> None:
    """Stop a running search gracefully: running trials finish, no new ones start, on every worker
    and every machine sharing the study. Rerunning the search continues it.

    Example: tunekit stop quickstart
    """
    from tunekit.runs import StudyDir
    from tunekit.study.liveness import live_workers
    from tunekit.study.stopping import request_stop
    from tunekit.study.storage import load_study

    loaded = load_study(StudyDir(runs, study), storage)
    request_stop(loaded)
    running = live_workers(loaded)
    _err(
        f"stop asked for study '{study}': "
        + (f"{len(running)} worker(s) finish their running trial, then exit" if running else "no worker runs it now")
    )


@app.command("lr-find")
@_guarded
def lr_find(
    config: ConfigArg,
    lr_min: Annotated[float, typer.Option("--min", help="Lowest learning rate of the sweep.")] = 1e-7,
    lr_max: Annotated[float, typer.Option("--max", help="Highest learning rate of the sweep.")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", min=10, help="Batches in the sweep.")] = 100,
    runs: RunsOpt = Path("runs"),
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Learning-rate range test: sweep the lr exponentially and suggest an lr and a search range.

    The model and optimizer are restored afterwards; the curve goes to runs/<name>/lr_find.csv
    (and lr_find.png with the plots extra).

    Example: tunekit lr-find configs/quickstart.yaml --set optimizer.name=sgd
    """
    from tunekit.config.load import load_config
    from tunekit.errors import UsageError
    from tunekit.runs import StudyDir, write_text
    from tunekit.train.build import build_run, check_buildable, resolve_device
    from tunekit.train.lr_find import lr_range_test

    if not 0 < lr_min < lr_max:
        raise UsageError(f"--min {lr_min} and --max {lr_max}: need 0 < min < max", "e.g. --min 1e-6 --max 1")
    cfg = check_buildable(load_config(config, set_))
    run = build_run(cfg, resolve_device(cfg.train.device), cfg.seed)
    curve = lr_range_test(run, lr_min, lr_max, steps, seed=cfg.seed)
    try:
        suggested, low, high = curve.suggestion()
    except ValueError as exc:
        raise UsageError(f"lr-find: {exc}") from None
    name = cfg.name or (Path(config).stem if config != "-" else "config")
    csv_path = StudyDir(runs, name).path / "lr_find.csv"
    write_text(
        csv_path,
        "lr,loss,smoothed_loss\n"
        + "".join(f"{a:.6g},{b:.6g},{c:.6g}\n" for a, b, c in zip(curve.lrs, curve.losses, curve.smoothed)),
    )
    from tunekit.train.lr_find import write_png

    png_path = csv_path.with_suffix(".png")
    result = {
        "suggested_lr": suggested,
        "search_range": [low, high],
        "diverged_at": curve.diverged_at,
        "steps": len(curve.lrs),
        "csv": str(csv_path),
        "png": str(png_path) if write_png(curve, suggested, png_path) else None,
    }
    if json_:
        _print_json(result)
        return
    from tunekit.report.formats import text_plot

    out = _console()
    # Plot up to the starting loss: the final blow-up would flatten everything else.
    shown = [(lr, y) for lr, y in zip(curve.lrs, curve.smoothed) if y <= 1.2 * curve.smoothed[0]]
    out.print(text_plot([x for x, _ in shown], [y for _, y in shown], mark=suggested), markup=False)
    out.print(
        f"suggested lr: {suggested:.3g} (a tenth of where the smoothed loss bottoms out)"
        + (f"; the loss diverged at {curve.diverged_at:.3g}" if curve.diverged_at else "")
    )
    out.print(f"search range: optimizer.lr: {{low: {low:.2g}, high: {high:.2g}, log: true}}")
    out.print(
        f"curve: {csv_path}" + (f" and {png_path}" if result["png"] else " (pip install 'tunekit[plots]' for a PNG)")
    )


ModelArgs = Annotated[
    list[str],
    typer.Argument(
        help="[CHECKPOINT] INPUT: a model.pt (or a folder with one; default: --study's best/model.pt), then a "
        "CSV file, an .npz (array X) or - for CSV on stdin.",
        show_default=False,
        metavar="[CHECKPOINT] INPUT",
    ),
]
ModelStudyOpt = Annotated[
    str | None, typer.Option("--study", help="Use runs/<study>/best/model.pt (default: the most recent study).")
]


@app.command()
@_guarded
def predict(
    args: ModelArgs,
    study: ModelStudyOpt = None,
    runs: RunsOpt = Path("runs"),
    format_: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    proba: Annotated[bool, typer.Option("--proba", help="Class probabilities: one column per class label.")] = False,
    allow_plugin: PluginOpt = None,
) -> None:
    """Predict on raw inputs with a trained model; predictions go to stdout.

    CSV columns are matched by name (the training target column, if present, is ignored).
    Class labels come back as the training data wrote them; regression values in the target's units.
    Large inputs are read and predicted in chunks of 10,000 rows.

    Example: tunekit predict --study quickstart new.csv > predictions.csv
    """
    from tunekit.config.sections import allow_plugins
    from tunekit.errors import UsageError
    from tunekit.predict.batch import predict_file

    if len(args) > 2:
        raise UsageError(
            f"expected [CHECKPOINT] INPUT, got {len(args)} arguments", "e.g. tunekit predict model.pt new.csv"
        )
    allow_plugins(allow_plugin)
    checkpoint, source = (None, args[0]) if len(args) == 1 else args
    predict_file(source, sys.stdout, checkpoint=checkpoint, study=study, runs=runs, fmt=format_, proba=proba)


@app.command()
@_guarded
def export(
    checkpoint: Annotated[
        str | None,
        typer.Argument(help="A model.pt, or a folder with one (default: --study's best/model.pt).", show_default=False),
    ] = None,
    format_: Annotated[
        str, typer.Option("--format", help="torchscript or onnx (needs tunekit[onnx]).")
    ] = "torchscript",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="The file to write.")] = None,
    study: ModelStudyOpt = None,
    runs: RunsOpt = Path("runs"),
    allow_plugin: PluginOpt = None,
) -> None:
    """Export a trained model as one graph that takes raw features (standardization folded in).

    Classification models output class probabilities (in the order of the class labels, stored in the
    file's metadata), regression models values in the target's units. The file is loaded back and
    checked against the checkpoint's predictions before it is given its name.

    Example: tunekit export --study quickstart --format onnx -o quickstart.onnx
    """
    from tunekit.config.sections import allow_plugins
    from tunekit.errors import UsageError
    from tunekit.predict.export import export_model

    if output is None:
        raise UsageError(
            "export needs -o FILE", "e.g. tunekit export --study quickstart --format torchscript -o model.ts"
        )
    allow_plugins(allow_plugin)
    result = export_model(output, format_, checkpoint=checkpoint, study=study, runs=runs)
    out = _console()
    for line in result.lines():
        out.print(line)


def _config_for_csv(path: Path, target: str, output: Path | None, name: str) -> str:
    """Read the user's table (its errors name row and column) and write a config for it."""
    import os

    from tunekit.components.data import csv
    from tunekit.config.starter import csv_config
    from tunekit.errors import ConfigError

    try:
        raw = csv(seed=0, path=str(path), target=target)
    except ConfigError as exc:  # what the table leaves open (data.task): said of the table, there is no config yet
        exc.source = str(path)
        raise
    n_classes = len(set(raw.y.tolist())) if raw.task == "classification" else None
    folder = output.resolve().parent if output is not None else Path.cwd()
    data_path = os.path.relpath(path.resolve(), folder)
    # The run line names the file being written; printed to stdout, the file is the one the user redirects to.
    config_file = shlex.quote(str(output)) if output is not None else f"{name}.yaml"
    return csv_config(
        name, data_path, target, raw.task, len(raw.y), n_classes, raw.feature_names or [], config_file=config_file
    )


def _templates() -> dict[str, str]:
    from importlib.resources import files

    folder = files("tunekit") / "templates"
    return {
        p.name[: -len(".yaml")]: p.read_text(encoding="utf-8") for p in folder.iterdir() if p.name.endswith(".yaml")
    }


SCHEMA_FILE = "tunekit.schema.json"


@app.command()
@_guarded
def init(
    template: Annotated[
        str,
        typer.Argument(help="quickstart, cnn, deep, finetune, init, optimizers, population, regression or schedules."),
    ] = "quickstart",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write here (and tunekit.schema.json beside it) instead of stdout."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    from_csv: Annotated[
        Path | None, typer.Option("--from-csv", help="Write a config for this CSV of yours (with --target).")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="With --from-csv: the column to predict.")] = None,
) -> None:
    """Write a commented starter config, with a modeline that gives editors completion.

    Example: tunekit init cnn -o my-cnn.yaml && tunekit validate my-cnn.yaml
             tunekit init --from-csv houses.csv --target price -o houses.yaml
    """
    import re

    from tunekit.errors import UsageError
    from tunekit.registry import did_you_mean

    if (from_csv is None) != (target is None):
        raise UsageError("--from-csv and --target go together", "e.g. tunekit init --from-csv data.csv --target y")
    if output is not None and output.exists() and not force:
        raise UsageError(f"{output} exists", "pass --force to overwrite it")
    # The study is named after the file, as `search` would name it without a `name:` line.
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", (output or from_csv or Path(template)).stem).lstrip("._-")[:64]
    if from_csv is not None:
        text = _config_for_csv(from_csv, target, output, stem or "data")
    else:
        templates = _templates()
        if template not in templates:
            raise UsageError(
                f"unknown template '{template}'",
                did_you_mean(template, list(templates)) or f"choose one of: {', '.join(sorted(templates))}",
            )
        text = f"# yaml-language-server: $schema={SCHEMA_FILE}\n" + templates[template]
        if output is not None:
            text = re.sub(r"^name: \S+", f"name: {stem or template}", text, count=1, flags=re.M)
    if output is None:
        sys.stdout.write(text)
        return
    from tunekit.runs import write_json, write_text

    write_text(output, text)
    schema_path = output.parent / SCHEMA_FILE
    if not schema_path.exists():
        from tunekit.config.schema import config_schema

        write_json(schema_path, config_schema())
    _err(f"wrote {output} (and {schema_path.name} for editor completion); next: tunekit validate {output}")


@app.command()
@_guarded
def schema() -> None:
    """Print the config's JSON Schema (for editors: yaml-language-server, VS Code, PyCharm).

    Example: tunekit schema > tunekit.schema.json
    """
    from tunekit.config.schema import config_schema

    _print_json(config_schema())


def main() -> None:
    """The `tunekit` entry point. A pipe closed outside a command's body (`tunekit --help | head -1`)
    is caught by Typer, which exits 1 after wrapping stdout in click's PacifyFlushWrapper; that exit
    is the reader leaving too. Inside a command, `_guarded` has already exited 0."""
    # Read once, when torch loads OpenMP, so before any command imports torch (train/threads.py says why).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except SystemExit as exc:
        if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            _reader_left()
        raise
