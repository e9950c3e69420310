"""Weight and bias initialization schemes, applied to every Linear and Conv layer.

Gains follow the activation that reads a layer's output (Xavier/He assume it): hidden layers use
the model's activation, the output `head` uses 'linear' because nothing squashes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from tunekit.components.models import ACTIVATIONS
from tunekit.registry import Registry

# fn(weight tensor, nonlinearity, **args) -> None (in place)
WEIGHT_INITS: Registry[Callable[..., None]] = Registry("weight init")
BIAS_INITS: Registry[Callable[..., None]] = Registry("bias init")


def _gain(nonlinearity: str, gain: float | None) -> float:
    if gain is not None:
        return gain
    return nn.init.calculate_gain(nonlinearity, 0.01 if nonlinearity == "leaky_relu" else None)


@WEIGHT_INITS.register("default")
def default(w: torch.Tensor, nonlinearity: str) -> None:
    """Keep PyTorch's own per-layer initialization."""


@WEIGHT_INITS.register("zeros")
def zeros(w: torch.Tensor, nonlinearity: str) -> None:
    """All weights 0: every unit in a layer stays identical (symmetry is never broken). For teaching."""
    nn.init.zeros_(w)


@WEIGHT_INITS.register("constant")
def constant(w: torch.Tensor, nonlinearity: str, value: float = 0.01) -> None:
    nn.init.constant_(w, value)


@WEIGHT_INITS.register("normal")
def normal(w: torch.Tensor, nonlinearity: str, mean: float = 0.0, std: float = 0.01) -> None:
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    nn.init.normal_(w, mean, std)


@WEIGHT_INITS.register("uniform")
def uniform(w: torch.Tensor, nonlinearity: str, low: float = -0.05, high: float = 0.05) -> None:
    if low > high:
        raise ValueError(f"low <= high must hold, but got (low={low}, high={high})")
    nn.init.uniform_(w, low, high)


@WEIGHT_INITS.register("xavier_uniform")
def xavier_uniform(w: torch.Tensor, nonlinearity: str, gain: float | None = None) -> None:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)): variance gain^2 * 2 / (fan_in + fan_out)."""
    nn.init.xavier_uniform_(w, _gain(nonlinearity, gain))


@WEIGHT_INITS.register("xavier_normal")
def xavier_normal(w: torch.Tensor, nonlinearity: str, gain: float | None = None) -> None:
    nn.init.xavier_normal_(w, _gain(nonlinearity, gain))


def _kaiming_nonlinearity(nonlinearity: str) -> str:
    # kaiming_* knows relu/leaky_relu/tanh/sigmoid/selu/linear; smooth relu-likes count as relu.
    return nonlinearity if nonlinearity in {"relu", "leaky_relu", "tanh", "sigmoid", "selu", "linear"} else "relu"


@WEIGHT_INITS.register("kaiming_uniform")
def kaiming_uniform(w: torch.Tensor, nonlinearity: str, mode: Literal["fan_in", "fan_out"] = "fan_in") -> None:
    nl = _kaiming_nonlinearity(nonlinearity)
    nn.init.kaiming_uniform_(w, a=0.01 if nl == "leaky_relu" else 0, mode=mode, nonlinearity=nl)


@WEIGHT_INITS.register("kaiming_normal")
def kaiming_normal(w: torch.Tensor, nonlinearity: str, mode: Literal["fan_in", "fan_out"] = "fan_in") -> None:
    """N(0, gain^2 / fan): He et al. (2015); gain sqrt(2) for relu."""
    nl = _kaiming_nonlinearity(nonlinearity)
    nn.init.kaiming_normal_(w, a=0.01 if nl == "leaky_relu" else 0, mode=mode, nonlinearity=nl)


@WEIGHT_INITS.register("orthogonal")
def orthogonal(w: torch.Tensor, nonlinearity: str, gain: float | None = None) -> None:
    nn.init.orthogonal_(w, _gain(nonlinearity, gain))


@WEIGHT_INITS.register("trunc_normal")
def trunc_normal(w: torch.Tensor, nonlinearity: str, std: float = 0.02, cutoff: float = 2.0) -> None:
    """N(0, std) truncated at +-cutoff standard deviations (ViT/BERT style)."""
    if std <= 0 or cutoff <= 0:
        raise ValueError("std and cutoff must be > 0")
    nn.init.trunc_normal_(w, 0.0, std, -cutoff * std, cutoff * std)


@BIAS_INITS.register("default")
def bias_default(b: torch.Tensor, value: float) -> None:
    """Keep PyTorch's own bias initialization."""


@BIAS_INITS.register("zeros")
def bias_zeros(b: torch.Tensor, value: float) -> None:
    nn.init.zeros_(b)


@BIAS_INITS.register("constant")
def bias_constant(b: torch.Tensor, value: float) -> None:
    nn.init.constant_(b, value)


def apply_init(model: nn.Module, weight: str, weight_args: dict, bias: str, bias_value: float) -> None:
    """Initialize every Linear/Conv layer of `model` in place."""
    weight_fn, bias_fn = WEIGHT_INITS.get(weight), BIAS_INITS.get(bias)
    hidden_nl = ACTIVATION_GAINS.get(getattr(model, "activation_name", "relu"), "relu")
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        nonlinearity = "linear" if name == "head" or name.endswith(".skip") else hidden_nl
        if weight != "default":
            with torch.no_grad():
                if parametrize.is_parametrized(module, "weight"):
                    # Weight-normed layer: initialize the full weight, then let the
                    # parametrization split it into direction and magnitude.
                    w = torch.empty_like(module.weight)
                    weight_fn(w, nonlinearity, **weight_args)
                    if (w.flatten(1).norm(dim=1) == 0).any():
                        raise ValueError(
                            f"init '{weight}' gives all-zero weight rows, which weight normalization "
                            "cannot divide by; use another init or model.weight_norm: false"
                        )
                    module.weight = w
                else:
                    weight_fn(module.weight, nonlinearity, **weight_args)
        if module.bias is not None and bias != "default":
            with torch.no_grad():
                bias_fn(module.bias, bias_value)


def _activation_gains() -> dict[str, str]:

    return {name: ACTIVATIONS.get(name)[1] for name in ACTIVATIONS}


ACTIVATION_GAINS = _activation_gains()


def expected_std(weight: str, fan_in: int, fan_out: int, nonlinearity: str) -> float:
    """The standard deviation a scheme promises; tests check initialized layers against it."""
    gain = nn.init.calculate_gain(nonlinearity)
    if weight.startswith("xavier"):
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    if weight.startswith("kaiming"):
        return nn.init.calculate_gain(_kaiming_nonlinearity(nonlinearity), 0) / math.sqrt(fan_in)
    raise ValueError(weight)
