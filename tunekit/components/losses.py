"""Loss functions, with the output width and prediction rule each implies.

A loss decides the model's head: cross_entropy wants K logits, bce_with_logits one logit for
two classes, regression losses one output per target. Keeping that knowledge here lets the
config say only `loss.name` and still get a model that fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tunekit.registry import Registry


def _plain_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def _plain_binary(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The same number as cross-entropy over the two classes (logits 0 and `out`).
    return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype))


def _plain_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y)


@dataclass
class LossSpec:
    task: str  # "classification" or "regression"
    build: Callable[..., Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    outputs: Callable[[int | None], int]  # n_classes -> width of the model's head
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None  # logits -> class ids
    # val_loss/test_loss: the task's plain loss, the same whatever the training loss's options
    # (unsmoothed, unweighted cross-entropy; MSE of the standardized target), so it compares
    # across loss settings. The optimized loss is train_loss.
    plain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _plain_mse


LOSSES: Registry[LossSpec] = Registry("loss")


def _cross_entropy(label_smoothing: float = 0.0, class_weights: list[float] | None = None):
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def _nll(class_weights: list[float] | None = None):
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    nll = nn.NLLLoss(weight=weight)
    # The model emits logits; NLL needs log-probabilities.
    return lambda out, y: nll(F.log_softmax(out, dim=1), y)


def _bce(pos_weight: float | None = None):
    pw = torch.tensor([pos_weight]) if pos_weight is not None else None
    bce = nn.BCEWithLogitsLoss(pos_weight=pw)
    return lambda out, y: bce(out.squeeze(1), y.to(out.dtype))


def _argmax(out: torch.Tensor) -> torch.Tensor:
    return out.argmax(dim=1)


def _binary(out: torch.Tensor) -> torch.Tensor:
    return (out.squeeze(1) > 0).long()


def _one_logit(n_classes: int | None) -> int:
    if n_classes != 2:
        raise ValueError(f"bce_with_logits is for 2 classes, the data has {n_classes}; use cross_entropy")
    return 1


LOSSES.register("cross_entropy")(LossSpec("classification", _cross_entropy, lambda k: k, _argmax, _plain_cross_entropy))
LOSSES.register("nll")(LossSpec("classification", _nll, lambda k: k, _argmax, _plain_cross_entropy))
LOSSES.register("bce_with_logits")(LossSpec("classification", _bce, _one_logit, _binary, _plain_binary))
LOSSES.register("mse")(LossSpec("regression", lambda: nn.MSELoss(), lambda k: 1))
LOSSES.register("l1")(LossSpec("regression", lambda: nn.L1Loss(), lambda k: 1))


def _huber(delta: float = 1.0):
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    return nn.HuberLoss(delta=delta)


def _smooth_l1(beta: float = 1.0):
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return nn.SmoothL1Loss(beta=beta)


LOSSES.register("huber")(LossSpec("regression", _huber, lambda k: 1))
LOSSES.register("smooth_l1")(LossSpec("regression", _smooth_l1, lambda k: 1))
