"""The learning-rate range test (Smith, 2017): raise the lr exponentially, one batch per step,
and watch the smoothed loss. It falls fastest at a good lr and explodes past the largest usable
one. The model and optimizer are put back exactly as they were afterwards.
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass, field

import torch

from tunekit.runs import write_atomic
from tunekit.train.batches import rows_per_batch
from tunekit.train.build import Run

# Exponential moving average of the loss, bias-corrected. 0.9 spans ~10 steps, under one decade of
# lr in a 100-step sweep of 8 decades; fastai's 0.98 lags two decades there and suggests too late.
SMOOTHING = 0.9
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds 4x its minimum


@dataclass
class LRCurve:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # raw batch losses
    smoothed: list[float] = field(default_factory=list)
    diverged_at: float | None = None

    def suggestion(self) -> tuple[float, float, float]:
        """(suggested lr, low, high). The classic rule: a tenth of the lr where the smoothed loss
        bottoms out (the minimum itself is already at the edge of stability); search the two
        decades below the minimum. Steepest-slope rules read noise on short sweeps."""
        if len(self.lrs) < 5:
            raise ValueError("too few steps before the loss diverged; lower --min")
        at_min = self.lrs[min(range(len(self.smoothed)), key=self.smoothed.__getitem__)]
        return at_min / 10, at_min / 100, at_min


def lr_range_test(run: Run, lr_min: float = 1e-7, lr_max: float = 10.0, steps: int = 100, seed: int = 0) -> LRCurve:
    if not 0 < lr_min < lr_max:
        raise ValueError(f"`min < max` must hold with min > 0, but got (min={lr_min}, max={lr_max})")
    model, opt, split = run.model, run.optimizer, run.split
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    saved_rng = torch.get_rng_state()
    curve = LRCurve()
    n = len(split.X_train)
    bs = rows_per_batch(n, run.config.train.batch_size)
    generator = torch.Generator(device=run.device).manual_seed(seed)
    perm, cursor = torch.randperm(n, device=run.device, generator=generator), 0
    avg, best = 0.0, math.inf
    model.train()
    try:
        for step in range(steps):
            lr = lr_min * (lr_max / lr_min) ** (step / max(1, steps - 1))
            for group in opt.param_groups:
                group["lr"] = lr
            if cursor + bs > n:
                perm, cursor = torch.randperm(n, device=run.device, generator=generator), 0
            idx = perm[cursor : cursor + bs]
            cursor += bs
            loss = run.loss_fn(model(split.X_train[idx]).float(), split.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())  # one sync per step is the point here: we read every loss
            if not math.isfinite(value):
                curve.diverged_at = lr
                break
            avg = SMOOTHING * avg + (1 - SMOOTHING) * value
            smooth = avg / (1 - SMOOTHING ** (step + 1))
            curve.lrs.append(lr)
            curve.losses.append(value)
            curve.smoothed.append(smooth)
            best = min(best, smooth)
            if step > 5 and smooth > DIVERGE_FACTOR * best:
                curve.diverged_at = lr
                break
    finally:
        # Put everything back: the test must leave no trace on the model it probed.
        model.load_state_dict(saved_model)
        opt.load_state_dict(saved_opt)
        for group, base in zip(opt.param_groups, run.schedule.base_lrs):
            group["lr"] = base
        run.schedule._apply()
        torch.set_rng_state(saved_rng)
    return curve


def write_png(curve: LRCurve, suggested: float, path) -> bool:
    """The curve as a PNG, when matplotlib (the `plots` extra) is installed. Returns whether it wrote one."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(curve.lrs, curve.losses, alpha=0.3, label="batch loss")
    ax.plot(curve.lrs, curve.smoothed, label="smoothed loss")
    ax.axvline(suggested, linestyle="--", color="k", label=f"suggested lr {suggested:.2g}")
    ax.set_xscale("log")
    ax.set_ylim(min(min(curve.losses), min(curve.smoothed)) * 0.9, curve.smoothed[0] * 1.3)  # the blow-up is cut off
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, lambda f: f.write(buffer.getvalue()), binary=True)
    return True
