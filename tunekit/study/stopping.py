"""Graceful stop: running trials finish, no new one starts. Asked by a first Ctrl-C, or by
`tunekit stop STUDY` from another shell, which reaches every worker on every machine through the
study storage; a second Ctrl-C interrupts as before (the running trial is queued again)."""

from __future__ import annotations

import contextlib
import signal
import time

from tunekit.study.options import main_thread

STOP = "tunekit.stop"  # study user attr: when a stop was asked (seconds since the epoch)


def request_stop(study) -> None:
    study.set_user_attr(STOP, time.time())


class Stop:
    """Has a stop been asked since this search started, here (Ctrl-C) or anywhere (`tunekit stop`)?
    A stop asked before the search started is an old one: rerunning the search continues the study."""

    def __init__(self, started: float | None = None):
        self.started = started if started is not None else time.time()
        self.local = False

    def asked(self, study) -> bool:
        return self.local or float(study.user_attrs.get(STOP) or 0) > self.started

    @contextlib.contextmanager
    def on_first_ctrl_c(self, log):
        """A first SIGINT only sets `local`; the next one raises KeyboardInterrupt as usual."""
        if not main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            yield  # started ignoring SIGINT (`tunekit search &` from a script): a Ctrl-C is not for us
            return

        def first(signum, frame):
            self.local = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
            log("stopping: the running trial(s) finish, no new ones start (Ctrl-C again to interrupt them)")

        previous = signal.signal(signal.SIGINT, first)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
