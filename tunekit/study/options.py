"""What a search was asked to do (flags and their defaults), and the exception --timeout raises mid-trial."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit.track.specs import TrackSpec


class TimedOut(Exception):
    """--timeout reached while a trial trained (args: the epoch, or "mid-epoch")."""


@dataclass
class SearchOptions:
    runs: Path = Path("runs")
    study: str | None = None
    trials: int | None = None
    timeout_s: float | None = None
    storage: str | None = None
    device: str | None = None
    fresh: bool = False
    repair: bool = False
    allow_data_change: bool = False  # resume a study whose data file changed (its fingerprint is renewed)
    warm_start: str | None = None  # a new study first runs the best trials of this one (same --runs)
    workers: int = 1
    devices: list[str] | None = None  # --devices: worker i trains on devices[i % len]
    threads: int | None = None  # torch threads per worker (default: train.threads, else cores // workers)
    quiet: bool = False
    verbose: bool = False  # a line per epoch
    worker_index: int = 0  # offsets the sampler seed per worker
    config_name: str | None = None  # the file stem, the last fallback for the study name
    started_at: float | None = None  # when the search began (time.time()): a `tunekit stop` after it counts
    track: list[TrackSpec] = field(default_factory=list)  # --track (the config's tracking: is merged in run_search)
    tracking: Any = None  # this process's tunekit.track.tracking.Tracking, not passed to workers
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    # The live view's feed (tunekit.report.live): when set, a trial's end is an event instead of a log line.
    events: Callable[[dict], None] | None = None

    def emit(self, **event) -> None:
        if self.events is not None:
            self.events(event)


def max_workers(cores: int | None = None) -> int:
    """--workers above this only fights over the cores (and forks toward the process limit)."""
    return min(256, 4 * (cores or os.cpu_count() or 1))


def study_name_for(name: str | None, opts: SearchOptions) -> str:
    """The study's name: --study, else the config's `name`, else the config file's stem."""
    if opts.study is not None:  # `--study ''` is a name, an invalid one: said, not replaced
        return opts.study
    return name or opts.config_name or "study"


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
