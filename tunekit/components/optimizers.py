"""Optimizers, each a thin typed wrapper over torch.optim so the config can be checked against it.

The wrapper's signature is what the config may say (validated with strict types before any
training); torch's own constructor then checks the values (negative lr, beta >= 1, ...), and
`tunekit validate` calls it on a dummy parameter so those errors also surface before a study starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Annotated

import torch
from annotated_types import Len

from tunekit.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
Betas = Annotated[list[float], Len(2, 2)]


@OPTIMIZERS.register("sgd")
def sgd(
    params,
    lr: float = 0.01,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
):
    """Gradient descent; `momentum` > 0 adds heavy-ball momentum, `nesterov` the look-ahead variant.
    Whether it is batch, stochastic or mini-batch gradient descent is set by `train.batch_size`."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening, weight_decay=weight_decay
    )


@OPTIMIZERS.register("adagrad")
def adagrad(
    params,
    lr: float = 0.01,
    lr_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    weight_decay: float = 0.0,
):
    return torch.optim.Adagrad(
        params,
        lr=lr,
        lr_decay=lr_decay,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
        weight_decay=weight_decay,
    )


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    params,
    lr: float = 0.01,
    alpha: float = 0.99,
    eps: float = 1e-8,
    momentum: float = 0.0,
    centered: bool = False,
    weight_decay: float = 0.0,
):
    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered, weight_decay=weight_decay
    )


@OPTIMIZERS.register("adam")
def adam(
    params,
    lr: float = 1e-3,
    betas: Betas = [0.9, 0.999],
    eps: float = 1e-8,
    amsgrad: bool = False,
    weight_decay: float = 0.0,
):
    """Adam; `weight_decay` here is L2 added to the gradient. Use adamw for decoupled decay."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, amsgrad=amsgrad, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(
    params,
    lr: float = 1e-3,
    betas: Betas = [0.9, 0.999],
    eps: float = 1e-8,
    amsgrad: bool = False,
    weight_decay: float = 0.01,
):
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, amsgrad=amsgrad, weight_decay=weight_decay)


@OPTIMIZERS.register("nadam")
def nadam(
    params,
    lr: float = 2e-3,
    betas: Betas = [0.9, 0.999],
    eps: float = 1e-8,
    momentum_decay: float = 4e-3,
    weight_decay: float = 0.0,
):
    return torch.optim.NAdam(
        params, lr=lr, betas=tuple(betas), eps=eps, momentum_decay=momentum_decay, weight_decay=weight_decay
    )


@OPTIMIZERS.register("radam")
def radam(params, lr: float = 1e-3, betas: Betas = [0.9, 0.999], eps: float = 1e-8, weight_decay: float = 0.0):
    return torch.optim.RAdam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamax")
def adamax(params, lr: float = 2e-3, betas: Betas = [0.9, 0.999], eps: float = 1e-8, weight_decay: float = 0.0):
    return torch.optim.Adamax(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adadelta")
def adadelta(params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0):
    return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


def _is_no_decay(name: str, param: torch.Tensor) -> bool:
    # Biases and norm scales/shifts are 1-D; decaying them only fights normalization (nanoGPT's rule).
    return param.ndim < 2


def parameter_groups(
    named_params: Iterable[tuple[str, torch.Tensor]], weight_decay: float, decay_bias_and_norm: bool
) -> list[dict]:
    trainable = [(n, p) for n, p in named_params if p.requires_grad]
    if decay_bias_and_norm or weight_decay == 0:
        return [{"params": [p for _, p in trainable]}]
    decay = [p for n, p in trainable if not _is_no_decay(n, p)]
    no_decay = [p for n, p in trainable if _is_no_decay(n, p)]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: torch.nn.Module, name: str, args: dict, decay_bias_and_norm: bool = False
) -> torch.optim.Optimizer:
    factory = OPTIMIZERS.get(name)

    wd = args.get("weight_decay", inspect.signature(factory).parameters["weight_decay"].default)
    groups = parameter_groups(model.named_parameters(), wd, decay_bias_and_norm)
    return factory(groups, **args)
