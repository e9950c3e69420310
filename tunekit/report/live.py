"""The live view of a running `search` on a terminal: trials done, the running trials with their
epoch and metric, the best so far, elapsed time and ETA, failures by reason.

It consumes the search's events (SearchOptions.emit: `study`, `start`, `epoch`, `end`), from the
training thread itself or, with --workers, from the parent's queue reader; handling one is a dict
update under a lock (and a redraw when a trial starts or ends), and a drawing thread redraws 4 times
a second, so training never waits on the screen. Every line is cut to the terminal's width (ellipsis), so nothing wraps. Notes (the
study line, a graceful stop, -v's epoch lines) print above the view. Off a terminal, under
NO_COLOR, TERM=dumb, -q or --json, `wanted` says no and the search prints its line log instead.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, deque

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

SHOWN_RUNNING = 6  # running trials listed; the rest are counted


def wanted(quiet: bool, machine_output: bool, environ=None, streams=None) -> bool:
    """Is a live view what this user sees best? Only when both stdout and stderr are terminals and
    nothing asks for plain output."""
    environ = os.environ if environ is None else environ
    streams = (sys.stdout, sys.stderr) if streams is None else streams
    if quiet or machine_output or "NO_COLOR" in environ:
        return False
    if environ.get("TERM", "") in ("dumb", "unknown"):
        return False
    try:
        return all(s.isatty() for s in streams)
    except (AttributeError, ValueError):
        return False


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LiveView:
    """`with LiveView(console, ...) as view:` shows the view; `view.handle(event)` and `view.note(line)`
    may be called from any thread. On leaving, the last frame stays on screen (not transient)."""

    def __init__(self, console: Console, workers: int = 1, timeout_s: float | None = None, started_at=None):
        self.console, self.workers, self.timeout_s = console, workers, timeout_s
        self.started = started_at or time.time()
        self.lock = threading.Lock()
        self.name, self.metric = "", ""
        self.done, self.target = 0, 0
        self.best = "-"
        self.running: dict[int, dict] = {}  # trial number -> {epoch, epochs, value, worker}
        self.durations: list[float] = []
        self.failed: Counter[str] = Counter()
        self.pruned = 0
        self.last = ""
        self.notes: deque[str] = deque()  # printed above the view by a drawing thread, never by a signal handler
        self.wake, self.closing = threading.Event(), False
        self.drawer: threading.Thread | None = None
        self.live = Live(
            console=console,
            get_renderable=self.render,
            auto_refresh=False,  # self.drawer redraws 4 times a second
            transient=False,
            redirect_stdout=False,  # stdout is data: nothing goes there while the view runs
            redirect_stderr=True,
        )

    def __enter__(self) -> LiveView:
        return self  # the view starts with the study: an error before it is printed on a clean line

    def __exit__(self, *exc) -> None:
        if self.drawer is not None:
            self.closing = True
            self.wake.set()
            self.drawer.join(timeout=5)
        self._print_notes()
        if self.live.is_started:
            self.live.stop()  # draws the last frame and moves the cursor below it, whatever ended the search

    def note(self, line: str) -> None:
        """A line above the view. Safe from a signal handler (a first Ctrl-C's note): it only queues the line."""
        self.notes.append(line)
        self.wake.set()

    def handle(self, event: dict) -> None:
        with self.lock:
            self._update(event)
        kind = event.get("kind")
        if kind == "study" and self.drawer is None:
            self.drawer = threading.Thread(target=self._draw, name="tunekit-live", daemon=True)
            self.drawer.start()
        elif kind in ("start", "end") and self.live.is_started:
            self.live.refresh()  # once a trial: every trial is seen running and ending, however short

    def _print_notes(self) -> None:
        while self.notes:
            self.console.print(Text(self.notes.popleft()), soft_wrap=False, overflow="fold")

    def _draw(self) -> None:
        self._print_notes()
        self.live.start(refresh=True)
        while not self.closing:
            self.wake.wait(0.25)
            self.wake.clear()
            self._print_notes()
            self.live.refresh()

    def _update(self, event: dict) -> None:
        kind = event.get("kind")
        if kind == "study":
            self.name, self.metric = event["name"], event["metric"]
            self.done, self.target, self.best = event["done"], event["target"], event["best"]
        elif kind == "start":
            self.running[event["trial"]] = {
                "epoch": 0,
                "epochs": event.get("epochs"),
                "value": None,
                "worker": event.get("worker"),
            }
        elif kind == "epoch" and event["trial"] in self.running:
            self.running[event["trial"]].update(epoch=event["epoch"], value=event.get("value"))
        elif kind == "end":
            self.running.pop(event["trial"], None)
            self.done, self.target, self.best = event["done"], event["target"], event["best"]
            self.durations.append(event["duration"])
            if event["state"] == "FAIL":
                self.failed[event["what"].removeprefix("reason=")] += 1
            elif event["state"] == "PRUNED":
                self.pruned += 1
            what = event["what"].removeprefix("pruned ")  # PRUNED at epoch 6
            self.last = f"trial {event['trial']} {event['state']} {what} ({event['duration']:.1f}s)"

    def _best(self) -> str:
        return self.best if self.best == "-" or self.best.startswith("pareto") else f"{self.metric}={self.best}"

    def eta(self, now: float) -> str:
        if not self.durations:
            return "–"
        remaining = max(0, self.target - self.done)
        seconds = sum(self.durations) / len(self.durations) * remaining / max(1, min(self.workers, remaining or 1))
        if self.timeout_s is not None:
            seconds = min(seconds, max(0.0, self.started + self.timeout_s - now))
        return clock(seconds)

    def render(self) -> Group:
        now = time.time()
        with self.lock:
            lines = [
                f"{self.name}  trials {self.done}/{self.target}  best {self._best()}",
                f"elapsed {clock(now - self.started)}  ETA {self.eta(now)}",
            ]
            numbers = sorted(self.running)
            for number in numbers[:SHOWN_RUNNING]:
                r = self.running[number]
                who = f"w{r['worker']} " if self.workers > 1 and r["worker"] is not None else ""
                epoch = f"epoch {r['epoch']}/{r['epochs']}" if r["epochs"] else f"epoch {r['epoch']}"
                value = f"  {self.metric}={r['value']:.4f}" if isinstance(r["value"], (int, float)) else ""
                lines.append(f"  {who}trial {number} running  {epoch}{value}")
            if len(numbers) > SHOWN_RUNNING:
                lines.append(f"  ... and {len(numbers) - SHOWN_RUNNING} more running")
            if self.last:
                lines.append(f"last: {self.last}")
            tally = [f"pruned: {self.pruned}"] if self.pruned else []
            if self.failed:
                tally.append("failed: " + ", ".join(f"{reason} x{n}" for reason, n in self.failed.most_common()))
            if tally:
                lines.append("  ".join(tally))
        return Group(*(Text(line, no_wrap=True, overflow="ellipsis") for line in lines))
