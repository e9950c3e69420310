"""A fault-injection switch for tests: make a chosen trial fail in a chosen way at a chosen epoch.

TUNEKIT_FAULT="TRIAL:WHEN:ACTION[,TRIAL:WHEN:ACTION...]" with WHEN an epoch number, or one of
  build    right after trial TRIAL's model was built, before its first epoch
  create   while the study is being created (TRIAL is ignored: use 0), between Optuna's create and tunekit's attributes
  ask      right after trial TRIAL was asked, before its worker claimed it
  tell     right after trial TRIAL was told, before best.yaml follows
and ACTION one of
  raise    the trial raises RuntimeError (a bug in user code, say)
  oom      the trial raises torch.cuda.OutOfMemoryError, as a GPU out of memory does
  nan      the model's weights become NaN (the next epoch's loss is not finite)
  hang     the trial sleeps for an hour (for --timeout and signal tests)
  sleep    the trial sleeps 0.1 s (plan it at many epochs to make one trial slow, leaving later ones fast)
  sigint / sigterm / sigkill   the worker process sends itself that signal (sigint twice, as a
                               user pressing Ctrl-C twice: a single one only asks for a graceful stop)
  sigint1  one SIGINT: the graceful stop
Read at each epoch end by the search's epoch callback; the training loop knows nothing of it.
"""

from __future__ import annotations

import os
import signal
import time

import torch

ACTIONS = {"raise", "oom", "nan", "hang", "sleep", "sigint", "sigint1", "sigterm", "sigkill"}


def planned() -> dict[tuple[int, str], str]:
    spec = os.environ.get("TUNEKIT_FAULT", "")
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        trial, when, action = part.split(":")
        if action not in ACTIONS:
            raise ValueError(f"TUNEKIT_FAULT: unknown action '{action}' (one of {', '.join(sorted(ACTIONS))})")
        out[(int(trial), when)] = action
    return out


def fire_at(when: str, trial: int = 0) -> None:
    """A fault planned at a moment outside training (create, ask, tell); a no-op when none is planned."""
    if os.environ.get("TUNEKIT_FAULT"):
        fire(trial, when, None)


def fire(trial: int, epoch: int | str, model) -> None:
    action = planned().get((trial, str(epoch)))
    if action is None:
        return
    if action == "raise":
        raise RuntimeError(f"injected fault in trial {trial} at epoch {epoch}")
    if action == "oom":
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    if action == "nan":
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    elif action == "hang":
        time.sleep(3600)
    elif action == "sleep":
        time.sleep(0.1)
    elif action == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # the first asks for a graceful stop; the second interrupts
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    else:
        signals = {"sigint1": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}
        os.kill(os.getpid(), signals[action])
        if action != "sigint1":
            time.sleep(5)  # let the signal arrive before training goes on
