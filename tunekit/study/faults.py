"""A fault-injection switch for tests: make a chosen trial fail in a chosen way at a chosen epoch.

TUNEKIT_FAULT="TRIAL:EPOCH:ACTION[,TRIAL:EPOCH:ACTION...]" with ACTION one of
  raise    the trial raises RuntimeError (a bug in user code, say)
  oom      the trial raises torch.cuda.OutOfMemoryError, as a GPU out of memory does
  nan      the model's weights become NaN (the next epoch's loss is not finite)
  hang     the trial sleeps for an hour (for --timeout and signal tests)
  sigint / sigterm / sigkill   the worker process sends itself that signal
Read at each epoch end by the search's epoch callback; the training loop knows nothing of it.
"""

from __future__ import annotations

import os
import signal
import time

import torch

ACTIONS = {"raise", "oom", "nan", "hang", "sigint", "sigterm", "sigkill"}


def planned() -> dict[tuple[int, int], str]:
    spec = os.environ.get("TUNEKIT_FAULT", "")
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        trial, epoch, action = part.split(":")
        if action not in ACTIONS:
            raise ValueError(f"TUNEKIT_FAULT: unknown action '{action}' (one of {', '.join(sorted(ACTIONS))})")
        out[(int(trial), int(epoch))] = action
    return out


def fire(trial: int, epoch: int, model) -> None:
    action = planned().get((trial, epoch))
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
    else:
        os.kill(os.getpid(), {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[action])
        time.sleep(5)  # let the signal arrive before training goes on
