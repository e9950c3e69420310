"""Model builders. Each takes the input shape and output width, plus its config arguments.

Layers get stable names (`blocks.0`, `head`) because the user refers to them: per-layer
gradient norms in metrics, `train.finetune.freeze`, and the report all use these names.
Every model sets `activation_name` so initializers can derive their gain from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from tunekit.registry import Registry


def layer_of(param_name: str) -> str:
    """'blocks.0.linear.weight' -> 'blocks.0'; 'head.bias' -> 'head': the unit a user freezes or inspects."""
    parts = param_name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]


# name -> (module factory, nonlinearity name that torch.nn.init gains understand)
ACTIVATIONS: Registry[tuple[Callable[[], nn.Module], str]] = Registry("activation")
for _name, _factory, _gain in [
    ("relu", nn.ReLU, "relu"),
    ("leaky_relu", nn.LeakyReLU, "leaky_relu"),
    ("elu", nn.ELU, "relu"),
    ("selu", nn.SELU, "selu"),
    ("gelu", nn.GELU, "relu"),
    ("silu", nn.SiLU, "relu"),
    ("mish", nn.Mish, "relu"),
    ("tanh", nn.Tanh, "tanh"),
    ("sigmoid", nn.Sigmoid, "sigmoid"),
    ("softplus", nn.Softplus, "relu"),
    ("identity", nn.Identity, "linear"),
]:
    ACTIVATIONS.register(_name)((_factory, _gain))

Activation = Literal[
    "relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "tanh", "sigmoid", "softplus", "identity"
]
Norm = Literal["none", "batch", "layer"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def _flat_features(input_shape: tuple[int, ...]) -> int:
    n = 1
    for d in input_shape:
        n *= d
    return n


@MODELS.register("linear")
def linear(input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """A single affine layer: logistic/softmax regression, or linear regression."""
    model = nn.Sequential()
    model.add_module("flatten", nn.Flatten())
    model.add_module("head", nn.Linear(_flat_features(input_shape), n_outputs))
    model.activation_name = "identity"
    return model


class MLPBlock(nn.Module):
    """Linear -> norm -> activation -> dropout, with an optional residual connection around it."""

    def __init__(
        self, d_in: int, d_out: int, activation: str, norm: str, dropout: float, residual: bool, weight_norm: bool
    ):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=norm != "batch")  # batch norm's shift makes a bias redundant
        if weight_norm:
            self.linear = nn.utils.parametrizations.weight_norm(self.linear)
        self.norm = {"none": nn.Identity, "batch": lambda: nn.BatchNorm1d(d_out), "layer": lambda: nn.LayerNorm(d_out)}[
            norm
        ]()
        self.act = ACTIVATIONS.get(activation)[0]()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual
        # When widths differ, the skip path needs a projection to add up (as in ResNet's 1x1 shortcut).
        self.skip = nn.Linear(d_in, d_out, bias=False) if residual and d_in != d_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(self.act(self.norm(self.linear(x))))
        return out + self.skip(x) if self.residual else out


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: list[int], n_outputs: int, **block_args):
        super().__init__()
        self.flatten = nn.Flatten()
        widths = [d_in, *hidden]
        self.blocks = nn.ModuleList(MLPBlock(a, b, **block_args) for a, b in zip(widths, widths[1:]))
        self.head = nn.Linear(widths[-1], n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


@MODELS.register("mlp")
def mlp(
    input_shape: tuple[int, ...],
    n_outputs: int,
    hidden: list[int] = [128],
    activation: Activation = "relu",
    norm: Norm = "none",
    dropout: float = 0.0,
    residual: bool = False,
    weight_norm: bool = False,
) -> nn.Module:
    """Fully connected network: `hidden` lists the width of each hidden layer."""
    if any(h < 1 for h in hidden):
        raise ValueError("hidden widths must be >= 1")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    model = MLP(
        _flat_features(input_shape),
        hidden,
        n_outputs,
        activation=activation,
        norm=norm,
        dropout=dropout,
        residual=residual,
        weight_norm=weight_norm,
    )
    model.activation_name = activation
    return model


def _need_image(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"model '{model}' needs image inputs (C, H, W) but the data gives shape {input_shape}; "
            "set data.as_images: true (digits) or use an image npz"
        )
    return input_shape  # type: ignore[return-value]


def _norm2d(norm: str, channels: int) -> nn.Module:
    return {"none": nn.Identity, "batch": lambda: nn.BatchNorm2d(channels), "layer": lambda: nn.GroupNorm(1, channels)}[
        norm
    ]()


@MODELS.register("cnn")
def cnn(
    input_shape: tuple[int, ...],
    n_outputs: int,
    channels: list[int] = [16, 32],
    kernel: int = 3,
    pooling: Literal["max", "avg", "none"] = "max",
    norm: Norm = "batch",
    activation: Activation = "relu",
    dropout: float = 0.0,
) -> nn.Module:
    """Conv -> norm -> activation (-> 2x2 pool) per entry of `channels`, then global average pool and a linear head."""
    c_in, h, w = _need_image(input_shape, "cnn")
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd size >= 1, got {kernel}")
    body = nn.Sequential()
    for i, c_out in enumerate(channels):
        block = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=norm != "batch"),
            _norm2d(norm, c_out),
            ACTIVATIONS.get(activation)[0](),
        )
        if pooling != "none" and min(h, w) >= 2:
            block.append(nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2))
            h, w = h // 2, w // 2
        body.add_module(str(i), block)
        c_in = c_out
    model = nn.Sequential()
    model.add_module("blocks", body)
    model.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout)))
    model.add_module("head", nn.Linear(c_in, n_outputs))
    model.activation_name = activation
    return model


class ResidualBlock(nn.Module):
    """Two 3x3 convs with a skip connection: out = act(x + F(x)) (He et al., 2016)."""

    def __init__(self, channels: int, norm: str, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=norm != "batch")
        self.norm1 = _norm2d(norm, channels)
        self.act = ACTIVATIONS.get(activation)[0]()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=norm != "batch")
        self.norm2 = _norm2d(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        return self.act(x + self.norm2(self.conv2(out)))


@MODELS.register("resnet")
def resnet(
    input_shape: tuple[int, ...],
    n_outputs: int,
    width: int = 16,
    blocks: int = 2,
    norm: Norm = "batch",
    activation: Activation = "relu",
) -> nn.Module:
    """A small residual conv net: a stem conv, `blocks` residual blocks of `width` channels, pooled linear head."""
    c_in, _, _ = _need_image(input_shape, "resnet")
    if width < 1 or blocks < 0:
        raise ValueError("width must be >= 1 and blocks >= 0")
    model = nn.Sequential()
    model.add_module(
        "stem",
        nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1, bias=norm != "batch"),
            _norm2d(norm, width),
            ACTIVATIONS.get(activation)[0](),
        ),
    )
    model.add_module("blocks", nn.Sequential(*(ResidualBlock(width, norm, activation) for _ in range(blocks))))
    model.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    model.add_module("head", nn.Linear(width, n_outputs))
    model.activation_name = activation
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
