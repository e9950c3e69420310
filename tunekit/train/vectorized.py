"""Population training: several runs of one architecture trained at once, as one vectorized model.

Runs that differ only in optimizer numbers (lr, momentum, weight decay, betas, ...), weight init
and lr schedule have identical shapes, so their weights can be stacked along a new leading axis
and trained with one vmapped forward/backward (torch.func) and one vectorized optimizer update
per step. On small models, where a step's time is mostly Python and kernel-launch overhead, K
members cost little more than one (see benchmarks/population.py for where it wins).

Each member keeps its own Run. Its schedule sets its lr; its model holds its weights at every
epoch end, for evaluation, the best-epoch copy and the callback; its EpochLedger closes its epochs
exactly as `fit` does. A member leaves the population when its callback raises (a pruned trial),
it diverges, or it stops early; the others train on. Like `fit`, nothing here knows Optuna.

Members see the same batches in the same order (one shuffle for the population); their
initializations and dropout masks are their own.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from tunekit.components.models import layer_of
from tunekit.errors import Problem
from tunekit.train.batches import Batches
from tunekit.train.build import Run
from tunekit.train.trainer import Diagnostics, EpochLedger, EpochRecord, FitResult, autocast

# torch.func has no batching rule for weight norm yet and falls back to a loop over members, with a
# warning per call; the results are right (tests/test_population.py), only slower than for plain layers.
warnings.filterwarnings(
    "ignore", message="There is a performance drop because we have not yet implemented the batching rule"
)

# Config keys population members may differ in; every other value must be equal within a population.
MEMBER_SECTIONS = ("optimizer.", "init.", "schedule.")
SHARED_OPTIMIZER_ARGS = {
    "optimizer.name",
    "optimizer.nesterov",
    "optimizer.amsgrad",
    "optimizer.centered",
    "optimizer.decay_bias_and_norm",
}


def is_member_key(key: str) -> bool:
    """May two members of one population have different values at this dotted config key?"""
    return key == "seed" or (key.startswith(MEMBER_SECTIONS) and key not in SHARED_OPTIMIZER_ARGS)


# On CPU cores a population wins only while a step is mostly overhead: measured on 2 cores
# (benchmarks/population.py), MLPs of 10k-85k weights train 1.1-2.4x faster as a population and one
# of 300k weights 0.8-0.9x as fast. Above this size, members train one at a time on the CPU.
CPU_MAX_WEIGHTS = 200_000


def why_not(run: Run, *, size: bool = True) -> tuple[str, str] | None:
    """Why this run cannot (or, with `size`, should not) be trained in a population: (the config key
    to change, the reason in words for the user); None if it can."""
    config = run.config
    if config.optimizer.name not in STACKED_OPTIMIZERS:
        return (
            "optimizer.name",
            f"optimizer '{config.optimizer.name}' has no vectorized form (population supports {', '.join(STACKED_OPTIMIZERS)})",
        )
    if config.train.compile:
        return "train.compile", "train.compile is on (a population is already one vectorized model)"
    if config.train.precision == "fp16":
        return "train.precision", "train.precision fp16 needs a gradient scaler per run (use bf16)"
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in run.model.modules()):
        return (
            "model.norm",
            "the model uses batch norm, whose running statistics are not vectorized (use norm: layer or none)",
        )
    weights = sum(p.numel() for p in run.model.parameters())
    if size and run.device.type == "cpu" and weights > CPU_MAX_WEIGHTS:
        return "model", (
            f"the model has {weights:,} weights; on CPU cores a population is faster only below "
            f"{CPU_MAX_WEIGHTS:,} (benchmarks/population.py)"
        )
    return None


def population_problems(config, space, run: Run) -> list:
    """study.population > 1 that can never train a population is a config error, not a silent slowdown.
    `run`: the base config built; `space`: the search space (a searched key may still choose a value that fits)."""

    if config.study.population < 2:
        return []
    if any(o.metric == "train_time" for o in config.study.objectives or []):
        return [
            Problem(
                "study.population",
                "members of a population share their training time, so train_time cannot be an objective",
                hint="set study.population: 1 to measure each trial's own time",
            )
        ]
    blocked = why_not(run, size=False)  # size is no config error: the study may run on a GPU
    if blocked is not None and space.get(blocked[0]) is None:
        return [
            Problem(
                "study.population",
                f"trials cannot train together: {blocked[1]}",
                hint=f"change {blocked[0]}, or set study.population: 1",
            )
        ]
    return []


# --- the vectorized optimizers ------------------------------------------------------------
# Each is torch's single-tensor update with per-member hyperparameters as [K] tensors, broadcast
# over the stacked weights. Hyperparameters are read from each member's own torch optimizer,
# whose lr its schedule keeps current, so warmup, every schedule and plateau work unchanged.

STACKED_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
_NUMBERS = {
    "sgd": ("lr", "momentum", "dampening", "weight_decay"),
    "adam": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "rmsprop": ("lr", "alpha", "eps", "momentum", "weight_decay"),
    "adagrad": ("lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value"),
}


def _per_member(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [K] tensor shaped to broadcast over stacked weights [K, ...], in their dtype."""
    return x.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class _Numbers:
    """One slot's hyperparameters as [K] float64 columns, plus what the hot loop asks of them:
    whether a column is zero for every member (decided once: no host sync per step) and its
    view broadcast over weights of a given rank (cached; lr's views are dropped when lr moves)."""

    def __init__(self, columns: dict[str, torch.Tensor]):
        self.columns = columns
        self.used = {k: bool((v != 0).any()) for k, v in columns.items()}
        self._views: dict[tuple, torch.Tensor] = {}

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.columns[key]

    def set_lr(self, column: torch.Tensor) -> None:
        self.columns["lr"] = column
        self._views = {k: v for k, v in self._views.items() if k[0] != "lr"}

    def view(self, key: str, like: torch.Tensor) -> torch.Tensor:
        cache_key = (key, like.dim(), like.dtype)
        if cache_key not in self._views:
            self._views[cache_key] = _per_member(self.columns[key], like)
        return self._views[cache_key]

    def rows(self, rows: torch.Tensor) -> _Numbers:
        return _Numbers({k: v[rows] for k, v in self.columns.items()})


class StackedOptimizer:
    def __init__(self, runs: Sequence[Run], names: list[str], device: torch.device):
        self.runs, self.device = list(runs), device
        self.kind = runs[0].config.optimizer.name
        # A weight's hyperparameters come from the param group it sits in, in each member's own optimizer;
        # members may group differently (weight decay 0 makes one group, else decay/no-decay), so
        # weights are keyed by the groups they sit in across all members ("slots").
        group_dicts = [{id(p): group for group in r.optimizer.param_groups for p in group["params"]} for r in runs]
        named = [dict(r.model.named_parameters()) for r in runs]
        self.slot_of: dict[str, int] = {}
        self.slots: list[list[dict]] = []  # per slot, each member's param group
        for name in names:
            groups = [lookup.get(id(members[name])) for lookup, members in zip(group_dicts, named)]
            if groups[0] is None:
                continue  # frozen (fine-tuning): in no optimizer
            key = [id(g) for g in groups]
            for i, slot in enumerate(self.slots):
                if [id(g) for g in slot] == key:
                    self.slot_of[name] = i
                    break
            else:
                self.slot_of[name] = len(self.slots)
                self.slots.append(groups)
        flags = runs[0].optimizer.param_groups[0]
        self.nesterov, self.amsgrad, self.centered = (
            flags.get("nesterov", False),
            flags.get("amsgrad", False),
            flags.get("centered", False),
        )
        self.hp = [self._read(slot) for slot in self.slots]
        self.tables: list[torch.Tensor] = []
        self.step_in_epoch = 0
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.steps = 0

    def _read(self, groups: list[dict]) -> _Numbers:
        values = {}
        for key in _NUMBERS[self.kind]:
            if key in ("beta1", "beta2"):
                column = [g["betas"][key == "beta2"] for g in groups]
            else:
                column = [g[key] for g in groups]
            values[key] = torch.tensor(column, dtype=torch.float64, device=self.device)
        if self.kind == "sgd":  # torch ignores dampening without momentum; so must a member whose momentum is 0
            values["keep_grad"] = torch.where(values["momentum"] != 0, 1 - values["dampening"], 1.0)
        # 1 - beta in float64, as torch computes it in Python: in float32, 1 - 0.999 is off by 1e-5 (relative).
        for key in ("beta1", "beta2", "alpha"):
            if key in values:
                values[f"1-{key}"] = 1 - values[key]
        return _Numbers(values)

    def plan_epoch(self, n_steps: int) -> None:
        """Each member's lr at every step of the coming epoch, one [n_steps, K] table per slot, copied
        to the device once. (Building a [K] tensor from the members' groups step by step would copy to
        the device, and wait for it, at every step of a per-step schedule.) Per-step schedules are
        closed-form in their step count; epoch schedules, plateau included, hold their lr all epoch."""
        self.tables = []
        for groups in self.slots:
            columns = []
            for run, group in zip(self.runs, groups):
                schedule = run.schedule
                if schedule.interval == "step":
                    index = next(i for i, g in enumerate(run.optimizer.param_groups) if g is group)
                    columns.append(
                        [schedule.base_lrs[index] * schedule.multiplier(schedule.t + s) for s in range(n_steps)]
                    )
                else:
                    columns.append([group["lr"]] * n_steps)
            self.tables.append(torch.tensor(columns, dtype=torch.float64).T.contiguous().to(self.device))
        self.step_in_epoch = 0

    def keep(self, rows: torch.Tensor, runs: Sequence[Run]) -> None:
        """Only these members (stack rows) train on."""
        self.runs = list(runs)
        kept = rows.tolist()
        self.slots = [[slot[r] for r in kept] for slot in self.slots]
        self.hp = [hp.rows(rows) for hp in self.hp]
        self.state = {n: {k: v[rows] for k, v in s.items()} for n, s in self.state.items()}

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor]) -> None:
        """One update of every member; `plan_epoch` must have planned this step."""
        for hp, table in zip(self.hp, self.tables):
            hp.set_lr(table[self.step_in_epoch])
        self.step_in_epoch += 1
        self.steps += 1
        update = getattr(self, f"_{self.kind}")
        for name, slot in self.slot_of.items():
            p = params[name]
            if p.grad is not None:
                update(p, p.grad, self.state.setdefault(name, {}), self.hp[slot])

    def _sgd(self, p, g, state, hp: _Numbers) -> None:
        if hp.used["weight_decay"]:
            g = g + hp.view("weight_decay", p) * p
        if hp.used["momentum"]:
            momentum = hp.view("momentum", p)
            if "buf" not in state:
                state["buf"] = g.clone()
            else:
                state["buf"].mul_(momentum).add_(hp.view("keep_grad", p) * g)
            buf = state["buf"]
            g = g + momentum * buf if self.nesterov else torch.where(momentum != 0, buf, g)
        p.sub_(hp.view("lr", p) * g)

    def _adam(self, p, g, state, hp: _Numbers, decoupled: bool = False) -> None:
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            if self.amsgrad:
                state["max_exp_avg_sq"] = torch.zeros_like(p)
        if hp.used["weight_decay"]:
            if decoupled:
                p.mul_(_per_member(1 - hp["lr"] * hp["weight_decay"], p))
            else:
                g = g + hp.view("weight_decay", p) * p
        beta2 = hp.view("beta2", p)
        state["exp_avg"].lerp_(g, hp.view("1-beta1", p))
        state["exp_avg_sq"].mul_(beta2).addcmul_(g, g * hp.view("1-beta2", p))
        second = state["exp_avg_sq"]
        if self.amsgrad:
            torch.maximum(state["max_exp_avg_sq"], second, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        # Bias corrections in float64, as torch computes them in Python floats.
        step_size = hp["lr"] / (1 - hp["beta1"] ** self.steps)
        denom = (second.sqrt() / _per_member((1 - hp["beta2"] ** self.steps).sqrt(), p)).add_(hp.view("eps", p))
        p.sub_(_per_member(step_size, p) * state["exp_avg"] / denom)

    def _adamw(self, p, g, state, hp: _Numbers) -> None:
        self._adam(p, g, state, hp, decoupled=True)

    def _rmsprop(self, p, g, state, hp: _Numbers) -> None:
        if "square_avg" not in state:
            state["square_avg"] = torch.zeros_like(p)
            if self.centered:
                state["grad_avg"] = torch.zeros_like(p)
        if hp.used["weight_decay"]:
            g = g + hp.view("weight_decay", p) * p
        alpha = hp.view("alpha", p)
        state["square_avg"].mul_(alpha).addcmul_(g, g * hp.view("1-alpha", p))
        if self.centered:
            state["grad_avg"].lerp_(g, hp.view("1-alpha", p))
            avg = state["square_avg"].addcmul(state["grad_avg"], state["grad_avg"], value=-1).sqrt_()
        else:
            avg = state["square_avg"].sqrt()
        avg = avg.add_(hp.view("eps", p))
        if hp.used["momentum"]:
            buf = state.setdefault("buf", torch.zeros_like(p))
            buf.mul_(hp.view("momentum", p)).add_(g / avg)
            p.sub_(hp.view("lr", p) * buf)
        else:
            p.sub_(hp.view("lr", p) * g / avg)

    def _adagrad(self, p, g, state, hp: _Numbers) -> None:
        if "sum" not in state:
            state["sum"] = hp.view("initial_accumulator_value", p).expand_as(p).clone()
        if hp.used["weight_decay"]:
            g = g + hp.view("weight_decay", p) * p
        clr = hp["lr"] / (1 + (self.steps - 1) * hp["lr_decay"])
        state["sum"].addcmul_(g, g)
        std = state["sum"].sqrt().add_(hp.view("eps", p))
        p.sub_(_per_member(clr, p) * g / std)


# --- the population ------------------------------------------------------------------------


class _Stack:
    """The members' weights as [K, ...] leaves, and the way back to each member's own model."""

    def __init__(self, runs: Sequence[Run]):
        self.runs = list(runs)
        base = runs[0].model
        self.names = [n for n, _ in base.named_parameters()]
        self.trainable = {n: p.requires_grad for n, p in base.named_parameters()}
        self.buffer_names = [n for n, _ in base.named_buffers()]
        with torch.no_grad():
            self.params = {
                n: torch.stack([dict(r.model.named_parameters())[n] for r in runs]).requires_grad_(self.trainable[n])
                for n in self.names
            }
            self.buffers = {n: torch.stack([dict(r.model.named_buffers())[n] for r in runs]) for n in self.buffer_names}
        self.layers = {n: layer_of(n) for n in self.names}
        self.optimizer = StackedOptimizer(runs, [n for n in self.names if self.trainable[n]], runs[0].device)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.params.values() if p.grad is not None]

    def layer_grad_squares(self) -> dict[str, torch.Tensor]:
        """Per layer, each member's squared gradient norm ([K])."""
        squares: dict[str, torch.Tensor] = {}
        for name, p in self.params.items():
            if p.grad is not None:
                sq = p.grad.detach().float().pow(2).flatten(1).sum(dim=1)
                layer = self.layers[name]
                squares[layer] = squares[layer] + sq if layer in squares else sq
        return squares

    @torch.no_grad()
    def to_members(self) -> None:
        for row, run in enumerate(self.runs):
            for name, p in run.model.named_parameters():
                p.copy_(self.params[name][row])

    @torch.no_grad()
    def from_members(self) -> None:
        # A callback may change a member's weights (tests inject NaN this way); the model is the truth at epoch ends.
        for row, run in enumerate(self.runs):
            for name, p in run.model.named_parameters():
                self.params[name][row].copy_(p)

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, device=self.runs[0].device)
        self.runs = [self.runs[r] for r in rows]
        with torch.no_grad():
            self.params = {n: p.detach()[index].requires_grad_(self.trainable[n]) for n, p in self.params.items()}
            self.buffers = {n: b[index] for n, b in self.buffers.items()}
        self.optimizer.keep(index, self.runs)


def fit_population(
    runs: Sequence[Run],
    *,
    shuffle_seed: int,
    monitor: str,
    direction: str,
    on_epoch: Sequence[Callable[[EpochRecord], None] | None] | None = None,
    on_end: Sequence[Callable[[FitResult | Exception], None] | None] | None = None,
    diagnostics: Diagnostics | None = None,
    epochs: int | None = None,
) -> list[FitResult | Exception]:
    """Train runs that share an architecture together. Returns, per run, its FitResult (its model
    holding its best epoch, as after `fit`) or the exception that ended it: Diverged, whatever its
    callback raised, or an error during a shared step (every member still training gets that one).
    `on_end[i]` is called with run i's outcome as soon as it has one (a member pruned at epoch 3 is
    done at epoch 3, not when the last member ends); what it raises propagates and stops the population.
    KeyboardInterrupt propagates. Every run must pass `why_not` and share config except member keys."""
    first = runs[0]
    cfg = first.config.train
    epochs = epochs or cfg.epochs
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(runs)
    ledgers = [
        EpochLedger(r, monitor=monitor, direction=direction, epochs=epochs, on_epoch=cb, diagnostics=diagnostics)
        for r, cb in zip(runs, callbacks)
    ]
    outcomes: list[FitResult | Exception | None] = [None] * len(runs)
    active = list(range(len(runs)))  # run index per stack row
    enders = list(on_end) if on_end is not None else [None] * len(runs)

    def settle(row: int, outcome: FitResult | Exception) -> None:
        outcomes[row] = outcome
        if enders[row] is not None:
            enders[row](outcome)

    split, device = first.split, first.device
    X, y = split.X_train, split.y_train
    n = len(X)
    batches = Batches.of(n, cfg.batch_size)
    n_steps = batches.steps
    clip = cfg.clip
    clip_norm, clip_value = (clip.norm, clip.value) if clip else (None, None)
    generator = torch.Generator(device=device).manual_seed(shuffle_seed)
    amp = autocast(first)
    step_schedule = any(r.schedule.interval == "step" for r in runs)  # each schedule's after_step checks its own
    model, loss_fn = first.model, first.loss_fn

    def member_loss(params, buffers, xb, yb):
        return loss_fn(functional_call(model, (params, buffers), (xb,)).float(), yb)

    # Each member draws its own dropout masks ("different"), as it would training alone.
    losses_of = vmap(member_loss, in_dims=(0, 0, None, None), randomness="different")
    try:
        stack = _Stack(runs)
    except Exception as exc:
        failed = exc
    else:
        failed = None
    if failed is not None:
        for row in active:
            settle(row, failed)
        return outcomes
    for r in runs:
        r.model.train()

    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        try:
            perm = torch.randperm(n, device=device, generator=generator)
            loss_sum = torch.zeros(len(active), device=device)
            stack.optimizer.plan_epoch(n_steps)
            for step in range(n_steps):
                idx = batches.rows(perm, step)
                xb, yb = X[idx], y[idx]
                with amp:
                    losses = losses_of(stack.params, stack.buffers, xb, yb)
                stack.zero_grad()
                losses.sum().backward()  # members share no weights, so each gets exactly its own gradient
                last = step == n_steps - 1
                if last:
                    layer_squares = stack.layer_grad_squares()  # before clipping, as `fit` reads them
                if clip_norm:
                    _clip_norm_per_member(stack.grads(), clip_norm)
                elif clip_value:
                    for g in stack.grads():
                        g.clamp_(-clip_value, clip_value)
                if last and clip:
                    clipped_squares = torch.stack(list(stack.layer_grad_squares().values())).sum(dim=0)
                stack.optimizer.step(stack.params)
                if step_schedule:
                    for row in active:
                        runs[row].schedule.after_step()
                loss_sum.add_(losses.detach(), alpha=len(idx))
            # One host sync per epoch, for all members at once.
            train_losses = (loss_sum / n).tolist()
            layers = list(layer_squares)
            norms_by_row = torch.stack([layer_squares[k] for k in layers], dim=1).sqrt().tolist()
            clipped_by_row = clipped_squares.sqrt().tolist() if clip else [None] * len(active)
        except Exception as exc:  # out of memory, the --timeout alarm: the whole population stops
            failed = exc
        if failed is not None:
            for row in active:
                settle(row, failed)
            return outcomes

        stack.to_members()
        staying = []
        for position, row in enumerate(active):
            norms = dict(zip(layers, norms_by_row[position]))
            try:
                stop = ledgers[row].close_epoch(epoch, train_losses[position], norms, started, clipped_by_row[position])
            except Exception as exc:
                settle(row, exc)
                continue
            if stop:
                settle(row, ledgers[row].result())
                continue
            staying.append(position)
        if not staying:
            break
        stack.from_members()
        if len(staying) < len(active):
            stack.keep(staying)
            active = [active[p] for p in staying]

    for row in active:
        if outcomes[row] is None:
            settle(row, ledgers[row].result())
    return outcomes


def _clip_norm_per_member(grads: list[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ for each member on its own: its norm over all its gradients."""
    total = torch.stack([g.float().pow(2).flatten(1).sum(dim=1) for g in grads]).sum(dim=0).sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(_per_member(coef, g))
