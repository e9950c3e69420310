"""The training loop. It knows nothing about Optuna: it calls `on_epoch` after every epoch,
and whatever that callback raises (a pruning signal, say) ends the run.

Speed matters because a study runs this hundreds of times: the data already sits on the device
as tensors, batches are slices of a random permutation (no DataLoader), the running loss is
summed on the device, and the host reads numbers back once per epoch, not once per step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from tunekit import reasons
from tunekit.components.metrics import better, direction_of
from tunekit.components.models import layer_of
from tunekit.train.batches import Batches
from tunekit.train.build import Run, copy_state

EVAL_CHUNK = 8192


class Diverged(Exception):
    """Training went numerically wrong; `reason` is one of reasons.DIAGNOSTIC.

    `record` is the epoch that went wrong; `partial` is the run up to there (its history ends with
    that epoch; `best` is the best epoch before it), for `train` to report what ran."""

    def __init__(
        self, reason: str, epoch: int, detail: str, record: EpochRecord | None = None, partial: FitResult | None = None
    ):
        super().__init__(f"{reason} at epoch {epoch}: {detail}")
        self.reason, self.epoch, self.detail, self.record, self.partial = reason, epoch, detail, record, partial


@dataclass
class Diagnostics:
    """Thresholds for calling a run diverged. Gradient norms are read at each epoch's last step."""

    vanishing_ratio: float = 1e-5  # first-layer / last-layer gradient norm below this ...
    vanishing_epochs: int = 3  # ... for this many epochs in a row (or all epochs, if fewer)
    exploding_norm: float = 1e4  # global gradient norm above this
    dead_relu_fraction: float = 0.9  # vanishing with this share of one ReLU layer dead is `dead_relu`
    enabled: bool = True


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    metrics: dict[str, float]
    layer_grad_norms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"epoch": self.epoch, **self.metrics, "layer_grad_norms": self.layer_grad_norms}


@dataclass
class FitResult:
    history: list[EpochRecord]
    best_epoch: int
    best: dict[str, float]  # the monitored epoch's metrics
    stopped_early: bool


def _layer_grad_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    squares: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            layer = layer_of(name)
            sq = p.grad.detach().float().pow(2).sum()
            squares[layer] = squares[layer] + sq if layer in squares else sq
    return squares


class _ReluWatch:
    """Forward hooks on every ReLU: which units (features or channels) fire for at least one input."""

    def __init__(self, model: nn.Module):
        self.alive: dict[int, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.ReLU)]

    def _hook(self, module, inputs, out):
        # A unit fired if its largest output over the batch is positive: one reduction, no boolean matrix.
        fired = (out.amax(dim=0) if out.dim() == 2 else out.transpose(0, 1).flatten(1).amax(dim=1)) > 0
        key = id(module)
        self.alive[key] = self.alive[key] | fired if key in self.alive else fired

    def dead_fractions(self) -> tuple[float, float] | None:
        """The share of dead units over all ReLU layers, and in the deadest one (a layer that is all
        dead passes no gradient to the layers before it, whatever the others do)."""
        for h in self.handles:
            h.remove()
        if not self.alive:
            return None
        units = torch.cat(list(self.alive.values()))
        worst = max(float(1 - alive.float().mean()) for alive in self.alive.values())
        return float(1 - units.float().mean()), worst


def evaluate(run: Run, X: torch.Tensor, y: torch.Tensor, prefix: str, dead_relu: bool = False) -> dict[str, float]:
    """Loss and task metrics on (X, y) in large batches, without building a graph.

    With `dead_relu`, also the fraction of ReLU units that output 0 for every input (dead units),
    measured in the same forward pass."""
    model, split = run.model, run.split
    if len(X) == 0:
        return {}
    was_training = model.training
    model.eval()
    watch = _ReluWatch(model) if dead_relu else None
    with torch.inference_mode():
        out = torch.cat([model(X[i : i + EVAL_CHUNK]) for i in range(0, len(X), EVAL_CHUNK)]).float()
        result = {f"{prefix}_loss": float(run.plain_loss(out, y))}
        if split.task == "classification":
            result[f"{prefix}_accuracy"] = float((run.predict(out) == y).float().mean())
        else:
            err = (out - y) * split.y_scale
            result[f"{prefix}_rmse"] = float(err.pow(2).mean().sqrt())
            result[f"{prefix}_mae"] = float(err.abs().mean())
            var = (y - y.mean()).pow(2).mean() * split.y_scale**2
            result[f"{prefix}_r2"] = float(1 - err.pow(2).mean() / var) if var > 0 else 0.0
    if watch is not None:
        dead = watch.dead_fractions()
        if dead is not None:
            result["dead_relu"], result["dead_relu_layer"] = dead
    model.train(was_training)
    return result


def autocast(run: Run):
    precision = run.config.train.precision
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(run.device.type, dtype=dtype)


class EpochLedger:
    """Everything that happens at one run's epoch end, whoever produced the epoch: the record,
    the schedule's epoch step, the divergence checks, the best weights, the callback, early stopping.

    `fit` trains one model and a population trains several at once (tunekit.train.vectorized); both
    close their epochs here, so a trial behaves the same whichever way it was trained."""

    def __init__(
        self,
        run: Run,
        *,
        monitor: str,
        direction: str,
        epochs: int,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        diagnostics: Diagnostics | None = None,
    ):
        self.run, self.monitor, self.direction, self.epochs, self.on_epoch = run, monitor, direction, epochs, on_epoch
        self.diagnostics = diagnostics or Diagnostics()
        self.stopping = stopping = run.config.train.early_stopping
        self.stop_metric = stopping.metric if stopping and stopping.metric else monitor
        self.stop_direction = direction if self.stop_metric == monitor else direction_of(self.stop_metric)
        self.history: list[EpochRecord] = []
        self.best_value, self.best_epoch, self.best_state, self.best_metrics = None, 0, None, {}
        self.stop_best, self.stale, self.vanishing_streak = None, 0, 0

    def close_epoch(
        self, epoch: int, train_loss: float, norms: dict[str, float], started: float, clipped: float | None = None
    ) -> bool:
        """Record epoch `epoch` (the model holds its weights); raises Diverged, or whatever the callback
        raises. Returns True when early stopping says to stop. `norms` are the last batch's gradient
        norms per layer before clipping; `clipped` is their global norm after it, when clipping is on."""
        run, diagnostics, schedule = self.run, self.diagnostics, self.run.schedule
        last_lr = schedule.last_step_lr if schedule.interval == "step" else schedule.lr
        global_norm = math.sqrt(sum(v * v for v in norms.values()))
        record = EpochRecord(
            epoch,
            {
                "train_loss": train_loss,
                **evaluate(run, run.split.X_val, run.split.y_val, "val", dead_relu=True),
                # The lr the epoch's first step used, and its last step's where a step schedule moved it.
                "lr": schedule.epoch_first_lr,
                **({"lr_last": last_lr} if last_lr != schedule.epoch_first_lr else {}),
                "grad_norm": global_norm,
                **({"grad_norm_clipped": clipped} if clipped is not None else {}),
                "epoch_time": time.perf_counter() - started,
            },
            norms,
        )
        run.schedule.after_epoch(record.metrics.get("val_loss", train_loss))
        self.history.append(record)

        if not math.isfinite(train_loss) or not math.isfinite(record.metrics.get("val_loss", 0.0)):
            raise self._diverged(reasons.NONFINITE_LOSS, epoch, f"train loss {train_loss}", record)
        if diagnostics.enabled:
            if not math.isfinite(global_norm) or global_norm > diagnostics.exploding_norm:
                raise self._diverged(
                    reasons.EXPLODING_GRADIENTS,
                    epoch,
                    f"gradient norm {global_norm:.3g} > {diagnostics.exploding_norm:g}",
                    record,
                )
            layers = list(norms.values())
            if len(layers) >= 3:
                ratio = layers[0] / layers[-1] if layers[-1] > 0 else 1.0
                self.vanishing_streak = self.vanishing_streak + 1 if ratio < diagnostics.vanishing_ratio else 0
                if self.vanishing_streak >= min(diagnostics.vanishing_epochs, self.epochs):
                    detail = f"first/last layer gradient norm ratio {ratio:.2e} < {diagnostics.vanishing_ratio:g}"
                    dead = record.metrics.get("dead_relu_layer", 0.0)
                    if dead >= diagnostics.dead_relu_fraction:
                        # Not a depth problem: the units are dead, and the remedy is another one.
                        raise self._diverged(
                            reasons.DEAD_RELU,
                            epoch,
                            f"{dead:.0%} of one ReLU layer's units output 0 for every validation input ({detail})",
                            record,
                        )
                    raise self._diverged(reasons.VANISHING_GRADIENTS, epoch, detail, record)

        value = record.metrics.get(self.monitor, train_loss)
        if self.best_value is None or better(value, self.best_value, self.direction):
            self.best_value, self.best_epoch, self.best_metrics = value, epoch, dict(record.metrics)
            self.best_state = copy_state(run.model)

        if self.on_epoch is not None:
            self.on_epoch(record)

        if self.stopping:
            current = record.metrics.get(self.stop_metric, train_loss)
            if self.stop_best is None or better(current, self.stop_best, self.stop_direction, self.stopping.min_delta):
                self.stop_best, self.stale = current, 0
            else:
                self.stale += 1
                if self.stale >= self.stopping.patience:
                    return True
        return False

    def _diverged(self, reason: str, epoch: int, detail: str, record: EpochRecord) -> Diverged:
        # The weights are left as they are: a stopped run is reported, not deployed.
        partial = FitResult(self.history, self.best_epoch, self.best_metrics, stopped_early=True)
        return Diverged(reason, epoch, detail, record, partial)

    def result(self) -> FitResult:
        """Put the best epoch's weights back (what a user would deploy) and sum the run up."""
        if self.best_state is not None:
            self.run.model.load_state_dict(self.best_state)
        return FitResult(
            self.history, self.best_epoch, self.best_metrics, stopped_early=len(self.history) < self.epochs
        )


def fit(
    run: Run,
    *,
    seed: int,
    monitor: str,
    direction: str,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    diagnostics: Diagnostics | None = None,
    epochs: int | None = None,
    shuffle_seed: int | None = None,
) -> FitResult:
    """Train `run.model` on the training split; return per-epoch history and the best epoch.

    The model ends holding the weights of its best epoch by `monitor` (what a user would deploy).
    `shuffle_seed` (default: `seed`) orders the batches; a trial trained in a population used its
    population's, and retraining it with the same one reproduces it.
    """
    cfg = run.config.train
    epochs = epochs or cfg.epochs
    ledger = EpochLedger(
        run, monitor=monitor, direction=direction, epochs=epochs, on_epoch=on_epoch, diagnostics=diagnostics
    )
    model, opt, split = run.model, run.optimizer, run.split
    X, y = split.X_train, split.y_train
    n = len(X)
    batches = Batches.of(n, cfg.batch_size)
    n_steps = batches.steps
    clip = cfg.clip
    scaler = torch.amp.GradScaler(run.device.type) if cfg.precision == "fp16" and run.device.type == "cuda" else None
    forward = torch.compile(model) if cfg.compile else model
    generator = torch.Generator(device=run.device).manual_seed(seed if shuffle_seed is None else shuffle_seed)

    # Decided once, not per step: the step loop is the hot path of every trial.
    amp = autocast(run)
    step_schedule = run.schedule.interval == "step"
    clip_norm, clip_value = (clip.norm, clip.value) if clip else (None, None)

    model.train()
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        perm = torch.randperm(n, device=run.device, generator=generator)
        loss_sum = torch.zeros((), device=run.device)
        for step in range(n_steps):
            idx = batches.rows(perm, step)
            xb, yb = X[idx], y[idx]
            with amp:
                loss = run.loss_fn(forward(xb).float(), yb)
            opt.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            last = step == n_steps - 1
            if last:
                # Before clipping and before the step: what this epoch's last batch produced. A norm
                # read after clipping would be the clip value, and could never look like an explosion.
                layer_norms = _layer_grad_norms(model)
            if clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            elif clip_value:
                nn.utils.clip_grad_value_(model.parameters(), clip_value)
            if last and clip:
                clipped_norms = _layer_grad_norms(model)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            if step_schedule:
                run.schedule.after_step()
            loss_sum.add_(loss.detach(), alpha=len(idx))

        # One host sync per epoch: everything above stayed on the device.
        norms = {k: math.sqrt(float(v)) for k, v in layer_norms.items()}
        clipped = math.sqrt(float(sum(clipped_norms.values()))) if clip else None
        if ledger.close_epoch(epoch, float(loss_sum) / n, norms, started, clipped):
            break
    return ledger.result()
