"""The --timeout alarm: stop a trial stuck inside an epoch shortly after the deadline, but never in
the middle of recording something.

The epoch callback checks the deadline at every epoch end; a trial hung inside an epoch never gets
there, so a SIGALRM armed for deadline + ALARM_GRACE_S raises TimedOut wherever the worker is.
Wherever it is must not be halfway through telling a trial, writing its outcome or reporting an
epoch: those run `shielded()`, and an alarm landing there waits (it is re-armed for a moment later)
until the shield is left. SIGALRM works in the main thread only; elsewhere the epoch-end check is
all there is.
"""

from __future__ import annotations

import contextlib
import signal
import time

from tunekit.study.options import TimedOut, main_thread

ALARM_GRACE_S = 2.0
RETRY_S = 0.05  # an alarm held by a shield tries again this much later

_shields = 0


@contextlib.contextmanager
def armed(deadline: float | None):
    """While the block runs, raise TimedOut("mid-epoch") in it at deadline + ALARM_GRACE_S (not inside a shield)."""
    if deadline is None or not main_thread():
        yield
        return

    def expired(signum, frame):
        if _shields:
            signal.setitimer(signal.ITIMER_REAL, RETRY_S)
            return
        raise TimedOut("mid-epoch")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.monotonic() + ALARM_GRACE_S))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def shielded():
    """The alarm does not land inside this block (it lands just after it)."""
    global _shields
    _shields += 1
    try:
        yield
    finally:
        _shields -= 1
