"""Learning-rate schedules as closed-form multipliers of the configured lr.

Each schedule is a function factor(u, D) -> multiplier, where u counts units (epochs or steps,
per `interval`) since warmup ended and D is the number of units after warmup. Keeping them as
plain formulas (rather than chained torch schedulers) makes warmup composable in front of any
schedule and makes every curve testable against its textbook formula.

Warmup over W units is linear: factor = (t + 1) / (W + 1) for t < W, so the first update already
moves and the last warmup step lands just below the full lr.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from tunekit.registry import Registry

SCHEDULES: Registry[Callable[..., Callable[[int, int], float]]] = Registry("schedule")


@SCHEDULES.register("constant")
def constant():
    return lambda u, D: 1.0


@SCHEDULES.register("step")
def step(step_size: int = 10, gamma: float = 0.1):
    """Multiply by `gamma` every `step_size` units."""
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1, got {step_size}")
    return lambda u, D: gamma ** (u // step_size)


@SCHEDULES.register("multistep")
def multistep(milestones: list[int] = [30, 60], gamma: float = 0.1):
    """Multiply by `gamma` at each milestone."""
    if sorted(milestones) != list(milestones):
        raise ValueError("milestones must be increasing")
    return lambda u, D: gamma ** sum(1 for m in milestones if u >= m)


@SCHEDULES.register("exponential")
def exponential(gamma: float = 0.95):
    """Multiply by `gamma` every unit."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    return lambda u, D: gamma**u


def _cosine(progress: float, min_factor: float) -> float:
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@SCHEDULES.register("cosine")
def cosine(min_factor: float = 0.0):
    """Half a cosine from the full lr down to `min_factor` x lr at the end of training."""
    return lambda u, D: _cosine(u / max(1, D), min_factor)


@SCHEDULES.register("cosine_restarts")
def cosine_restarts(period: int = 10, period_mult: int = 1, min_factor: float = 0.0):
    """SGDR: cosine annealing that restarts every `period` units, each period `period_mult` x longer."""
    if period < 1 or period_mult < 1:
        raise ValueError("period and period_mult must be >= 1")

    def factor(u: int, D: int) -> float:
        length, start = period, 0
        while u >= start + length:
            start, length = start + length, length * period_mult
        return _cosine((u - start) / length, min_factor)

    return factor


@SCHEDULES.register("cyclic")
def cyclic(period: int = 4, base_factor: float = 0.1, mode: Literal["triangular", "triangular2"] = "triangular"):
    """Cyclical lr (Smith 2017): up from `base_factor` x lr to lr and back every `period` units;
    triangular2 halves the amplitude each cycle."""
    if period < 2:
        raise ValueError(f"period must be >= 2, got {period}")

    def factor(u: int, D: int) -> float:
        cycle, pos = divmod(u, period)
        tri = 1 - abs(2 * pos / period - 1)  # 0 -> 1 -> 0 across one cycle
        amplitude = (1 - base_factor) * (0.5**cycle if mode == "triangular2" else 1.0)
        return base_factor + amplitude * tri

    return factor


@SCHEDULES.register("onecycle")
def onecycle(pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4):
    """One cycle (Smith & Topin): cosine up from lr/div_factor to lr over `pct_start` of training,
    then cosine down to lr/(div_factor*final_div_factor)."""
    if not 0 < pct_start < 1:
        raise ValueError(f"pct_start must be in (0, 1), got {pct_start}")
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)

    def factor(u: int, D: int) -> float:
        up = max(1.0, pct_start * D)
        if u < up:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * u / up))
        # The last unit (D - 1) lands exactly on the final lr, as torch's OneCycleLR does.
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, (u - up) / max(1.0, D - 1 - up))))

    return factor


@SCHEDULES.register("linear")
def linear(end_factor: float = 0.0):
    """Straight line from lr to `end_factor` x lr at the end of training."""
    return lambda u, D: 1 - (1 - end_factor) * min(1.0, u / max(1, D))


@SCHEDULES.register("polynomial")
def polynomial(power: float = 2.0, end_factor: float = 0.0):
    """(1 - progress)^power decay from lr to `end_factor` x lr."""
    return lambda u, D: end_factor + (1 - end_factor) * (1 - min(1.0, u / max(1, D))) ** power


@SCHEDULES.register("plateau")
def plateau(factor: float = 0.1, patience: int = 5, threshold: float = 1e-4, min_factor: float = 0.0):
    """Reduce lr by `factor` when val_loss has not improved by `threshold` (relative) for `patience` epochs.
    Driven by the validation loss, so it always steps per epoch."""
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    return Plateau(factor, patience, threshold, min_factor)


class Plateau:
    def __init__(self, factor: float, patience: int, threshold: float, min_factor: float):
        self.factor, self.patience, self.threshold, self.min_factor = factor, patience, threshold, min_factor
        self.current, self.best, self.bad_epochs = 1.0, math.inf, 0

    def __call__(self, u: int, D: int) -> float:
        return self.current

    def observe(self, val_loss: float) -> None:
        if val_loss < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = val_loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.current = max(self.min_factor, self.current * self.factor)
            self.bad_epochs = 0


class LRSchedule:
    """Sets each param group's lr = base lr x warmup/schedule factor at every unit boundary."""

    def __init__(
        self, optimizer, factor: Callable[[int, int], float], warmup_units: int, total_units: int, interval: str
    ):
        self.optimizer = optimizer
        self.factor = factor
        self.warmup = warmup_units
        self.total = total_units
        self.interval = interval
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.t = 0
        self._apply()
        # The lr of the current epoch's first and last step, for the epoch's record.
        self.epoch_first_lr = self.last_step_lr = self.lr

    def multiplier(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / (self.warmup + 1)
        return self.factor(t - self.warmup, max(1, self.total - self.warmup))

    def _apply(self) -> None:
        m = self.multiplier(self.t)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * m

    def advance(self) -> None:
        self.t += 1
        self._apply()

    def after_step(self) -> None:
        self.last_step_lr = self.lr
        if self.interval == "step":
            self.advance()

    def after_epoch(self, val_loss: float) -> None:
        if isinstance(self.factor, Plateau):
            self.factor.observe(val_loss)
        if self.interval == "epoch":
            self.advance()
        elif isinstance(self.factor, Plateau):
            self._apply()
        self.epoch_first_lr = self.lr

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def build_schedule(
    optimizer,
    name: str,
    args: dict,
    warmup_epochs: int,
    warmup_steps: int,
    interval: str,
    epochs: int,
    steps_per_epoch: int,
) -> LRSchedule:
    factor = SCHEDULES.get(name)(**args)
    if isinstance(factor, Plateau):
        interval = "epoch"
    per_unit = steps_per_epoch if interval == "step" else 1
    total = epochs * per_unit
    warmup = warmup_epochs * per_unit + (
        warmup_steps if interval == "step" else math.ceil(warmup_steps / steps_per_epoch)
    )
    return LRSchedule(optimizer, factor, warmup, total, interval)
