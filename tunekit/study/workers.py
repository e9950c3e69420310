"""`--workers N`: N processes on this machine share one study through its storage.

Each worker is a fresh spawned process (not a fork: torch's threads and CUDA do not survive
forking) with its own device and its own share of the CPU cores, because oversubscribed
threads cost more than they give: on 2 cores, 2 workers x 2 threads train 3.5x slower than
2 workers x 1 thread. OMP_NUM_THREADS is set before the worker first imports torch.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queues
import signal
import sys
import time
from collections import deque

from tunekit.config.sections import ALLOWED_PLUGINS, Config
from tunekit.errors import StateError
from tunekit.runs import StudyDir
from tunekit.study.options import Terminated
from tunekit.study.stopping import Stop, request_stop
from tunekit.study.storage import load_study


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or os.cpu_count() or 1) // workers)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send this worker SIGTERM when the `search` that started it dies, however it
    dies (a SIGKILL included): the worker then closes its trial and exits instead of training on as
    an orphan. Linux only (prctl); elsewhere the worker still stops at its next trial (see below)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    raw: dict,
    source: str | None,
    fields: dict,
    index: int,
    remaining_s: float | None,
    plugins: list[str],
    quiet: bool,
    parent_pid: int,
    events=None,
) -> None:
    os.environ["OMP_NUM_THREADS"] = str(fields["threads"])
    from tunekit.study.options import SearchOptions, Terminated
    from tunekit.study.stopping import Stop
    from tunekit.study.worker import work
    from tunekit.train.build import set_threads

    def terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminated)
    die_with_parent(parent_pid)
    from tunekit.config.sections import allow_plugins, check_sections
    from tunekit.config.space import SearchSpace
    from tunekit.errors import TunekitError

    allow_plugins(plugins)
    label = f"[w{index}] "
    send = _Sender(events) if events is not None else None  # the parent draws a live view: all goes to it

    def say(line: str) -> None:
        if send is not None:
            send.put({"kind": "note", "line": line})
        else:
            print(line, file=sys.stderr, flush=True)

    try:
        config, _ = check_sections(raw)
        config.source = source
        space, _ = SearchSpace.parse(config)
        log = (lambda line: None) if quiet else say
        opts = SearchOptions(**fields, log=log, events=None if send is None else send.put)
        set_threads(opts.threads)
        deadline = time.monotonic() + remaining_s if remaining_s is not None else None
        stop = Stop(opts.started_at)
        work(config, space, StudyDir(opts.runs, fields["study"]), opts, deadline, label, stop)
        if stop.local:
            sys.exit(130)  # a terminal's first Ctrl-C reached this worker too: its trial finished
    except KeyboardInterrupt as exc:
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    except TunekitError as exc:
        for line in exc.lines():
            say(f"{label}error: {line}")
        sys.exit(exc.exit_code)
    finally:
        if send is not None:
            send.flush()


class _Sender:
    """A worker's end of the live view's queue, safe to call from a signal handler (a first Ctrl-C's
    note): a put that lands inside another put only leaves its item for the outer one to send, where
    taking the queue's lock again would deadlock."""

    def __init__(self, queue):
        self.queue, self.pending, self.busy = queue, deque(), False

    def put(self, item: dict) -> None:
        self.pending.append(item)
        if not self.busy:
            self.flush()

    def flush(self) -> None:
        self.busy = True
        try:
            while self.pending:
                self.queue.put(self.pending.popleft())
        finally:
            self.busy = False


def run_workers(config: Config, study_dir: StudyDir, opts, stop: Stop) -> None:
    """Start opts.workers processes on the study and wait for all of them. A first Ctrl-C asks every
    worker to stop through the study (a `kill -INT` of this process reaches no worker by itself)."""
    threads = opts.threads or config.train.threads or threads_per_worker(opts.workers)
    remaining = opts.timeout_s
    ctx = multiprocessing.get_context("spawn")
    procs = []
    queue = ctx.Queue() if opts.events is not None else None
    for i in range(opts.workers):
        fields = {
            f.name: getattr(opts, f.name)
            for f in dataclasses.fields(opts)
            if f.name not in ("log", "tracking", "events")
        }
        fields.update(
            study=study_dir.name,
            workers=1,
            threads=threads,
            fresh=False,
            repair=False,
            worker_index=i,
            device=(opts.devices[i % len(opts.devices)] if opts.devices else opts.device),
        )
        p = ctx.Process(
            target=_worker_main,
            args=(
                config.raw,
                config.source,
                fields,
                i,
                remaining,
                sorted(ALLOWED_PLUGINS),
                opts.quiet,
                os.getpid(),
                queue,
            ),
            name=f"tunekit-worker-{i}",
        )
        p.start()
        procs.append(p)
    opts.log(
        f"started {opts.workers} workers x {threads} thread(s)"
        + (f" on {', '.join(opts.devices)}" if opts.devices else "")
    )
    try:
        with stop.on_first_ctrl_c(opts.log):
            asked = False
            while any(p.is_alive() for p in procs):
                if stop.local and not asked:
                    asked = True
                    request_stop(load_study(study_dir, opts.storage))
                _relay(queue, opts, 0.2)
                for p in procs:
                    p.join(timeout=0 if queue is not None else 0.2)
    except KeyboardInterrupt as exc:
        # Pass the signal on (a terminal's Ctrl-C already reached them; a `kill` did not) and let
        # each worker close its trial before we report.
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        for p in procs:
            p.join(timeout=60)
        _relay(queue, opts, 0)
        raise
    _relay(queue, opts, 0)
    codes = [p.exitcode for p in procs]
    if any(code in (130, 143) for code in codes):
        raise Terminated() if 143 in codes else KeyboardInterrupt()
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    if bad:
        error = StateError(
            f"worker {bad[0][0]} exited with code {bad[0][1]}; the study is saved", "rerun the same command to continue"
        )
        if bad[0][1] in (2, 3, 4, 5, 6):  # a user error the worker printed (e.g. 4: the database was lost): its code
            error.exit_code = bad[0][1]
        raise error


def _relay(queue, opts, wait_s: float) -> None:
    """Hand the workers' events and lines to the live view: what is queued now, waiting up to wait_s for the first."""
    if queue is None:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            event = queue.get(timeout=max(0.0, deadline - time.monotonic())) if wait_s else queue.get_nowait()
        except (queues.Empty, OSError, EOFError):
            return
        if event.get("kind") == "note":
            opts.log(event["line"])
        else:
            opts.events(event)
        wait_s = 0
