"""Why a trial failed: the one vocabulary that training, the study, the report and the advice share.

A failed trial records one of these as its `reason` user attribute (SPEC §3). The groups below
are what the rest of tunekit asks about a reason: was it a diagnostic (the run went numerically
wrong), is the trial run again (so it does not count), or was it cut off by the budget.
"""

from __future__ import annotations

# Diagnostics: training itself went wrong (train/trainer.py raises these).
NONFINITE_LOSS = "nonfinite_loss"
EXPLODING_GRADIENTS = "exploding_gradients"
VANISHING_GRADIENTS = "vanishing_gradients"
DEAD_RELU = "dead_relu"  # the gradients vanished because most ReLU units output 0 for every input

# The trial could not run to its end for another reason.
OOM = "oom"  # out of memory, on the GPU or the host
ERROR = "error"  # an exception: a bug in user code, a bad value only training could reveal
TIMEOUT = "timeout"  # --timeout reached before it finished an epoch (with one done, it is COMPLETE, cut_short)
INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: its params are queued again
WORKER_DIED = "worker_died"  # its worker stopped heartbeating (killed, machine lost): queued again
DISK_FULL = "disk_full"  # the disk filled while it trained: queued again, the search stops

ALL = (
    NONFINITE_LOSS,
    EXPLODING_GRADIENTS,
    VANISHING_GRADIENTS,
    DEAD_RELU,
    OOM,
    ERROR,
    TIMEOUT,
    INTERRUPTED,
    WORKER_DIED,
    DISK_FULL,
)

DIAGNOSTIC = frozenset({NONFINITE_LOSS, EXPLODING_GRADIENTS, VANISHING_GRADIENTS, DEAD_RELU})
# What to try next, for the message that reports a diagnostic.
REMEDY = {
    NONFINITE_LOSS: "a lower optimizer.lr, or train.grad_clip",
    EXPLODING_GRADIENTS: "a lower optimizer.lr, or train.grad_clip (the norm is read before clipping)",
    VANISHING_GRADIENTS: "batch norm, residual connections, a relu-family activation or a kaiming/xavier init",
    DEAD_RELU: "a lower optimizer.lr, leaky_relu, or a kaiming init instead of zeros",
}
# Run again, so they do not count toward --trials: cut short by a signal, a lost worker, a full
# disk, or the --timeout budget before its first epoch (the next run gives the trial its full epochs).
# A trial --timeout stops after an epoch is not failed: it is COMPLETE with its best epoch's value
# and records `cut_short: timeout` in its result (tunekit.study.trial).
RETRIED = frozenset({INTERRUPTED, WORKER_DIED, DISK_FULL, TIMEOUT})
NOT_THE_CONFIG = RETRIED  # say nothing about the config: never "every trial failed" for these alone
