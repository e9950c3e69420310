"""`--workers N`: N processes on this machine share one study through its storage.

The parent (`tunekit search`) never imports torch: it reads the YAML, spawns the workers at once
and supervises them. Worker 0 validates the config and creates or resumes the study (what one
process would do before its first trial) while the others import torch; then the parent starts
the trackers and lets every worker go. So the first trial starts about when one process's would,
and the parent holds no torch, model or data while it waits (about 60 MB instead of 250).

Each worker is a fresh spawned process (not a fork: torch's threads and CUDA do not survive
forking) with its own device and its own share of the CPU cores, because oversubscribed
threads cost more than they give: on 2 cores, 2 workers x 2 threads train 3.5x slower than
2 workers x 1 thread. OMP_NUM_THREADS is set before the worker first imports torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue as queues
import signal
import sys
import time
from collections import deque
from typing import Any

from tunekit.config.load import ConfigFile, parse_overrides
from tunekit.config.sections import ALLOWED_PLUGINS
from tunekit.errors import StateError, TunekitError, os_error
from tunekit.runs import StudyDir
from tunekit.signals import Terminated, raise_terminated
from tunekit.study.options import SearchOptions, main_thread
from tunekit.study.stopping import Stop, request_stop


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
    file: ConfigFile,
    overrides: list[str],
    fields: dict,
    index: int,
    plugins: list[str],
    parent_pid: int,
    queue,
    inbox,
    live: bool,
) -> None:
    """A worker process: (worker 0) validate and prepare the study, then wait for the parent's go
    (the study's concrete config, storage and trackers) and work on the study until it is done."""
    os.environ["OMP_NUM_THREADS"] = str(fields["threads"] or threads_per_worker(fields["workers"]))
    label = f"[w{index}] "
    send = _Sender(queue)

    def say(line: str) -> None:
        if live:  # the parent draws a live view: all goes to it
            send.put({"kind": "note", "line": line})
        else:
            print(line, file=sys.stderr, flush=True)

    log = (lambda line: None) if fields["quiet"] else say
    events = send.put if live else None
    try:
        signal.signal(signal.SIGTERM, raise_terminated)  # started deaf to it and to SIGINT (see _started_deaf)
        die_with_parent(parent_pid)
        # This process's own imports (torch among them): the parent must not load them to name this function.
        from tunekit.config.sections import allow_plugins, check_sections
        from tunekit.config.space import SearchSpace
        from tunekit.study.worker import work
        from tunekit.train.build import set_threads

        # A Ctrl-C missed until here was the parent's too: it sends this worker no go, so it ends at the go.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        allow_plugins(plugins)
        if inbox.poll():  # only a stop can come before the study is ready: the search ended while this one started
            return
        if index == 0:
            _prepare(file, overrides, fields, log, events, send)
        else:
            _warm_up_meanwhile(file, overrides, fields)
        go = inbox.recv()
        if go is None:  # worker 0 could not prepare the study, or the search was stopped before it began
            return
        config, _ = check_sections(go["raw"])
        config.source = go["source"]
        space, _ = SearchSpace.parse(config)
        fields.update(go["fields"], workers=1, fresh=False, repair=False, warm_start=None, worker_index=index)
        if go["devices"]:
            fields["device"] = go["devices"][index % len(go["devices"])]
        opts = SearchOptions(**fields, log=log, events=events)
        set_threads(opts.threads)
        deadline = time.monotonic() + go["remaining_s"] if go["remaining_s"] is not None else None
        stop = Stop(opts.started_at)
        work(config, space, StudyDir(opts.runs, go["study"]), opts, deadline, label, stop)
        if stop.local:
            sys.exit(130)  # a terminal's first Ctrl-C reached this worker too: its trial finished
    except KeyboardInterrupt as exc:
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    except TunekitError as exc:
        for line in exc.lines():
            say(f"{label}error: {line}")
        sys.exit(exc.exit_code)
    except OSError as exc:
        error = os_error(exc)  # a full disk under a journal append, say: the one line one process gives
        if error is None:
            raise
        for line in error.lines():
            say(f"{label}error: {line}")
        sys.exit(error.exit_code)
    finally:
        send.flush()


def _prepare(file: ConfigFile, overrides: list[str], fields: dict, log, events, send) -> None:
    """Worker 0: what one process does before its first trial (validate, create or resume the study).
    The parent hears `ready` with what the others need, or `failed` with the error to exit with."""
    from tunekit.study.preflight import load_checked
    from tunekit.study.search import prepare_study
    from tunekit.study.storage import storage_lost
    from tunekit.study.trial import objectives_of
    from tunekit.track.specs import from_section, merged
    from tunekit.track.tracking import check_installed

    try:
        config = load_checked(file, overrides)
        specs = merged(from_section(config.tracking), fields["track"])
        check_installed(specs)
        opts = SearchOptions(**fields, log=log, events=events)
        config, _, study_dir = prepare_study(config, opts)
    except TunekitError as exc:
        send.put({"kind": "failed", "lines": exc.lines(), "code": exc.exit_code})
        raise _Said() from None
    except Exception as exc:
        lost = storage_lost(exc)
        if lost is not None:
            send.put({"kind": "failed", "lines": lost.lines(), "code": lost.exit_code})
        elif isinstance(exc, OSError):  # a full disk among them: the parent says it as one process would
            send.put({"kind": "oserror", "args": (exc.errno, exc.strerror, exc.filename)})
        else:
            send.put({"kind": "crashed", "what": f"{type(exc).__name__}: {exc}"})
        raise _Said() from None
    send.put(
        {
            "kind": "ready",
            "study": study_dir.name,
            "storage": opts.storage,
            "raw": config.raw,
            "source": config.source,
            "objectives": objectives_of(config),
            "specs": specs,
            "threads": opts.threads or config.train.threads or threads_per_worker(fields["workers"]),
            "devices": opts.devices,
        }
    )


def _warm_up_meanwhile(file: ConfigFile, overrides: list[str], fields: dict) -> None:
    """The other workers, while worker 0 prepares: pay this process's one-time costs (torch's lazy
    imports, the data) on the config as written, so that each starts training the moment the study
    is ready. A config that does not validate is worker 0's to report: this one just waits."""
    from tunekit.config.load import load_config
    from tunekit.train.build import warm_up

    try:
        config = load_config(file, overrides)
    except Exception:  # whatever it is, worker 0 meets it too and reports it
        return
    warm_up(config, fields["device"] or config.train.device)


class _Said(SystemExit):
    """Worker 0's preparation failed and the parent was told why: it prints the error, so this
    process exits without a word of its own."""

    def __init__(self):
        super().__init__(0)


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


def search_in_workers(file: ConfigFile, overrides: list[str], opts: SearchOptions) -> dict[str, Any]:
    """`search --workers N`: start N processes on the study and wait for all of them; returns the SPEC
    §6 summary. A first Ctrl-C asks every worker to stop through the study (a `kill -INT` of this
    process reaches no worker by itself)."""
    opts.started_at = opts.started_at or time.time()
    parse_overrides(overrides)  # a malformed --set is said here, before any process starts
    previous_term = signal.signal(signal.SIGTERM, raise_terminated) if main_thread() else None
    stop = Stop(opts.started_at)
    ctx = multiprocessing.get_context("spawn")
    # Listed as they start, not returned: a signal held while they start is raised the moment the
    # block ends, and the handlers below must still find every worker (and the queue they unpickle).
    procs, queue, inboxes, tracking = [], None, [], None
    try:
        with stop.on_first_ctrl_c(opts.log):
            # The queue starts multiprocessing's resource tracker, which unblocks SIGINT and SIGTERM
            # when it has started: outside _started_deaf, so that a signal meanwhile is not lost to SIG_IGN.
            queue = ctx.Queue()  # workers -> parent: worker 0's ready/failed, and the live view's events
            with _started_deaf():
                _start_processes(ctx, queue, file, overrides, opts, procs, inboxes)
            # Imported once the workers are on their way: optuna's import (~0.2 s) would only delay them.
            from tunekit.study.session import end_search, open_tracking
            from tunekit.study.storage import load_study

            ready = _await_preparation(procs, queue, inboxes, opts, stop)
            study_dir = StudyDir(opts.runs, ready["study"])
            opts.study, opts.storage = ready["study"], ready["storage"]
            specs = ready["specs"]
            if specs:
                tracking = opts.tracking = open_tracking(specs, study_dir, ready["objectives"], "", owner=True)
            alive = [s for s in specs if tracking and s.name in tracking.specs_alive]  # one that failed was said here
            _send_all(inboxes, _go(ready, alive, opts))
            opts.devices = ready["devices"]
            opts.log(
                f"started {opts.workers} workers x {ready['threads']} thread(s)"
                + (f" on {', '.join(opts.devices)}" if opts.devices else "")
            )
            _supervise(procs, queue, opts, stop, lambda: load_study(study_dir, opts.storage))
    except KeyboardInterrupt as exc:
        if tracking:
            tracking.close(interrupted=True)
        _send_all(inboxes, None)  # a worker still starting (deaf to signals until its imports are done) ends at its go
        # Pass the signal on (a terminal's Ctrl-C already reached them; a `kill` did not) and let
        # each worker close its trial before we report.
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        for p in procs:
            p.join(timeout=60)
        _end_workers(procs, grace_s=5)
        if queue is not None:
            _relay(queue, opts, 0)
        raise
    except BaseException:
        if tracking:
            tracking.close(interrupted=True)
        _end_workers(procs)  # none may outlive the search (one waiting for its go would hold the exit forever)
        raise
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    _raise_for_exit_codes([p.exitcode for p in procs])
    if stop.local:
        if tracking:
            tracking.close(interrupted=True)
        raise KeyboardInterrupt()  # a first Ctrl-C: the running trials finished; exit 130 with the resume command
    return end_search(study_dir, opts.storage, ready["objectives"], tracking)


def _go(ready: dict, track: list, opts: SearchOptions) -> dict:
    """What every worker starts from: worker 0's concrete config, the study and its storage, the
    trackers that started here, the time left of --timeout."""
    remaining = opts.timeout_s  # counted from here, as one process counts from the end of its preparation
    return {
        "study": ready["study"],
        "raw": ready["raw"],
        "source": ready["source"],
        "remaining_s": remaining,
        "devices": ready["devices"],
        "fields": {"storage": opts.storage, "study": ready["study"], "track": track, "threads": ready["threads"]},
    }


@contextlib.contextmanager
def _started_deaf():
    """Processes started inside start with SIGINT and SIGTERM ignored (a disposition a spawned
    process inherits): a Ctrl-C during a worker's interpreter start or torch's import would kill it
    with a traceback, or abort torch's C++ start-up. Each worker listens again once it is ready to
    act on them (_worker_main). This process keeps its own signals: blocked meanwhile, not ignored,
    they are delivered when the block ends."""
    if not main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    handlers = {s: signal.signal(s, signal.SIG_IGN) for s in held}
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _start_processes(ctx, queue, file: ConfigFile, overrides: list[str], opts: SearchOptions, procs, inboxes) -> None:
    """Start the workers, appending each (and its inbox) to `procs`/`inboxes` the moment it exists."""
    fields = {
        f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name not in ("log", "tracking", "events")
    }
    for i in range(opts.workers):
        # Until worker 0 has made --devices concrete (`auto`), a worker knows only what was asked.
        worker_fields = dict(fields, device=(opts.devices[i % len(opts.devices)] if opts.devices else opts.device))
        receiver, sender = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_worker_main,
            args=(
                file,
                overrides,
                worker_fields,
                i,
                sorted(ALLOWED_PLUGINS),
                os.getpid(),
                queue,
                receiver,
                opts.events is not None,
            ),
            name=f"tunekit-worker-{i}",
        )
        p.start()
        receiver.close()  # the worker holds its end now
        procs.append(p)
        inboxes.append(sender)


def _await_preparation(procs, queue, inboxes, opts: SearchOptions, stop: Stop) -> dict:
    """Relay worker 0's lines until it says the study is ready. If it fails, its error is raised here
    (the CLI prints it as one process would) and the other workers are sent home. A first Ctrl-C
    before then interrupts: no trial runs yet that could finish."""
    leader = procs[0]
    while True:
        if stop.local:
            raise KeyboardInterrupt()
        message = _relay(queue, opts, 0.1)
        if message is None and not leader.is_alive():
            message = _relay(queue, opts, 0) or {"kind": "exited"}  # what it sent before it exited
        if message is None:
            continue
        if message["kind"] == "ready":
            return message
        _send_all(inboxes, None)
        for p in procs:
            p.join(timeout=30)
        if message["kind"] == "failed":
            raise _Relayed(message["lines"], message["code"])
        if message["kind"] == "oserror":
            raise OSError(*message["args"])
        if message["kind"] == "crashed":
            raise RuntimeError(f"worker 0: {message['what']}")
        if stop.local or leader.exitcode in _INTERRUPTED:
            raise Terminated() if leader.exitcode in (143, -signal.SIGTERM) else KeyboardInterrupt()
        raise StateError(
            f"worker 0 exited with code {leader.exitcode} before the study was ready", "rerun the same command"
        )


def _send_all(inboxes, message) -> None:
    for inbox in inboxes:
        try:
            inbox.send(message)
        except OSError:  # that worker has died: the supervisor reports its exit code
            pass


def _end_workers(procs, grace_s: float = 30.0) -> None:
    """Stop the workers still running (SIGTERM: each closes its trial), then kill any that will not."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


class _Relayed(TunekitError):
    """An error a worker found, raised in the parent with the worker's own lines and exit code."""

    def __init__(self, lines: list[str], exit_code: int):
        super().__init__("; ".join(lines))
        self.exit_code, self._lines = exit_code, lines

    def lines(self) -> list[str]:
        return self._lines


def _supervise(procs, queue, opts: SearchOptions, stop: Stop, study) -> None:
    """Relay the workers' events until every worker has exited; a first Ctrl-C here asks them all to
    stop (through `study()`, the study loaded when needed)."""
    asked = False
    while any(p.is_alive() for p in procs):
        if stop.local and not asked:
            asked = True
            request_stop(study())
        _relay(queue, opts, 0.2)
        for p in procs:
            p.join(timeout=0)
    _relay(queue, opts, 0)


_INTERRUPTED = (130, 143, -signal.SIGINT, -signal.SIGTERM)  # a worker's exit after Ctrl-C / SIGTERM


def _raise_for_exit_codes(codes: list[int | None]) -> None:
    if any(code in _INTERRUPTED for code in codes):
        raise Terminated() if any(code in (143, -signal.SIGTERM) for code in codes) else KeyboardInterrupt()
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    if bad:
        error = StateError(
            f"worker {bad[0][0]} exited with code {bad[0][1]}; the study is saved", "rerun the same command to continue"
        )
        if bad[0][1] in (2, 3, 4, 5, 6):  # a user error the worker printed (e.g. 4: the database was lost): its code
            error.exit_code = bad[0][1]
        raise error


def _relay(queue, opts: SearchOptions, wait_s: float) -> dict | None:
    """Hand the workers' events and lines to the live view (what is queued now, waiting up to wait_s
    for the first), up to the first of worker 0's messages to this process, which is returned."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            event = queue.get(timeout=max(0.0, deadline - time.monotonic())) if wait_s else queue.get_nowait()
        except (queues.Empty, OSError, EOFError, ValueError):
            return None
        kind = event.get("kind")
        if kind in ("ready", "failed", "oserror", "crashed"):
            return event
        if kind == "note":
            opts.log(event["line"])
        elif opts.events is not None:
            opts.events(event)
        wait_s = 0
