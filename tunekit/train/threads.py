"""How many CPU threads training uses when neither `train.threads` nor the worker count says.

Measured on a 2-core machine (benchmarks/threads.py, benchmark 8): a quickstart-sized MLP step (~10 MFLOP)
gains nothing from a second thread on an idle machine and loses up to 10x under a background
load, because every intra-op parallel region waits for its slowest thread and a busy core makes
that thread late. Steps large enough to amortize that wait (a 512-wide MLP at batch 128, a small
CNN) do gain from all cores when the machine is quiet. So: one thread below a work threshold,
all cores above it. And OpenMP is told to sleep rather than spin while it waits
(OMP_WAIT_POLICY=PASSIVE, set by the CLI before torch loads its OpenMP runtime, the user's own
setting kept), so threads that lose the race do not burn the core another process needs.
"""

from __future__ import annotations

import os

import torch
from torch import nn

# Forward multiply-adds of one training batch above which more than one thread pays.
PARALLEL_ABOVE_MACS = 20_000_000


def forward_macs(model: nn.Module, batch: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of `batch` through the model's linear and conv layers
    (the rest is small beside them), counted with hooks on a no-grad pass."""
    total = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.modules.conv._ConvNd):
            kernel = 1
            for k in module.kernel_size:
                kernel *= k
            total += output.numel() * (module.in_channels // module.groups) * kernel

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def default_threads(model: nn.Module, batch: torch.Tensor, cores: int | None = None) -> int:
    """1 for small steps, every core for large ones (see the module docstring)."""
    cores = cores or os.cpu_count() or 1
    try:
        macs = forward_macs(model, batch)
    except Exception:  # a model the count cannot run through is trained with torch's own default
        return cores
    return 1 if macs < PARALLEL_ABOVE_MACS else cores
