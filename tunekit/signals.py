"""SIGINT and SIGTERM, from the process's first moment to its last: before a command's body runs
they end the process at once (nothing is written yet), inside it they are exceptions the CLI turns
into exit 130 / 143 with the resume command."""

from __future__ import annotations

import contextlib
import os
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the running trial is closed properly (Python's default dies silently)."""


def raise_terminated(signum, frame):
    """The SIGTERM handler of every process tunekit runs in."""
    raise Terminated()


def leave_at_once(signum, frame):
    """Until a command's body runs: the imports and Typer's parsing, where a KeyboardInterrupt would be
    a traceback (or Typer's silent 130, SIGTERM included). Nothing has been read or written yet."""
    name = signal.Signals(signum).name
    os.write(2, f"interrupted ({name}) before the command started; nothing was written\n".encode())
    os._exit(128 + signum)


def leave_quietly(signum, frame):
    """After a command's body: its outcome (or the resume command) is being printed; a second Ctrl-C
    ends the process with its code instead of a traceback."""
    os._exit(128 + signum)


def _answer(signum: int, handler) -> object:
    """Install `handler`, unless the signal was ignored when this process started (a job started with
    `&` from a script ignores SIGINT: a Ctrl-C meant for the foreground must not reach it). Returns
    the handler that was there."""
    previous = signal.getsignal(signum)
    if previous != signal.SIG_IGN:
        signal.signal(signum, handler)
    return previous


def leave_at_once_until_a_command_runs() -> None:
    """The entry point's first step (tunekit.entry)."""
    _answer(signal.SIGINT, leave_at_once)
    _answer(signal.SIGTERM, leave_at_once)


@contextlib.contextmanager
def as_exceptions():
    """A command's body: Ctrl-C raises KeyboardInterrupt, SIGTERM Terminated, so what runs closes its
    trial, files and tracking on the way out. The previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = _answer(signal.SIGINT, signal.default_int_handler), _answer(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        for signum, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
            if handler is not None:  # None: set outside Python; nothing of ours to put back
                signal.signal(signum, leave_quietly if handler is leave_at_once else handler)
