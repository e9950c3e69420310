"""Fine-tuning: start a model from a tunekit checkpoint, optionally with a new head, and freeze layers.

Frozen parameters get requires_grad=False before the optimizer is built, so they are neither
updated nor decayed: after training they are bit-identical to the checkpoint.
"""

from __future__ import annotations

import pickle

import torch
from torch import nn

from tunekit.components.models import layer_of
from tunekit.config.sections import Finetune
from tunekit.errors import ConfigError, DataError, Problem
from tunekit.registry import did_you_mean


def load_checkpoint(path: str) -> dict:
    """Load model.pt with weights_only=True: a checkpoint can never run code."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(
            f"checkpoint not found: {path} (train.finetune.checkpoint)", "run `tunekit train` first, or fix the path"
        ) from None
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # torch names the class it refused to import
            raise DataError(
                f"checkpoint {path} cannot be loaded safely: it is corrupt or not a checkpoint",
                "re-save it with tunekit train",
            ) from None
        raise DataError(
            f"checkpoint {path} holds objects other than tensors and plain data; refusing to unpickle it",
            "tunekit loads only plain checkpoints (weights_only=True); re-save it with tunekit train",
        ) from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise DataError(
            f"checkpoint {path} cannot be loaded safely: {str(exc).splitlines()[0]}",
            "tunekit loads only plain checkpoints (weights_only=True); re-save it with tunekit train",
        ) from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise DataError(f"{path} is not a tunekit checkpoint (no state_dict)")
    return payload


def layer_names(model: nn.Module) -> list[str]:
    """The model's layers in order, as the user names them in `freeze`."""
    names: list[str] = []
    for name, _ in model.named_parameters():
        layer = layer_of(name)
        if layer not in names:
            names.append(layer)
    return names


def apply_finetune(model: nn.Module, spec: Finetune, source: str | None) -> list[str]:
    """Load weights (all but the head when `new_head`), freeze the chosen layers; return their names."""
    state = load_checkpoint(spec.checkpoint)["state_dict"]
    if spec.new_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    own = model.state_dict()
    problems = []
    for key, value in state.items():
        if key not in own:
            problems.append(f"checkpoint has '{key}', the model does not")
        elif own[key].shape != value.shape:
            problems.append(
                f"'{key}' is {tuple(value.shape)} in the checkpoint but {tuple(own[key].shape)} in the model"
            )
    missing = [k for k in own if k not in state and not (spec.new_head and k.startswith("head."))]
    if missing:
        problems.append(f"the checkpoint lacks {', '.join(missing[:3])}")
    if problems:
        raise ConfigError(
            [
                Problem(
                    "train.finetune.checkpoint",
                    f"does not fit this model: {problems[0]}",
                    hint="fine-tune with the architecture the checkpoint was trained with",
                )
            ],
            source,
        )
    model.load_state_dict(state, strict=False)

    layers = layer_names(model)
    if isinstance(spec.freeze, int):
        if not 0 <= spec.freeze < len(layers):
            raise ConfigError(
                [
                    Problem(
                        "train.finetune.freeze",
                        f"can freeze 0..{len(layers) - 1} of the {len(layers)} layers, got {spec.freeze}",
                    )
                ],
                source,
            )
        frozen = layers[: spec.freeze]
    else:
        frozen = []
        for prefix in spec.freeze:
            matched = [layer for layer in layers if layer == prefix or layer.startswith(prefix + ".")]
            if not matched:
                raise ConfigError(
                    [
                        Problem(
                            "train.finetune.freeze",
                            f"no layer named '{prefix}'",
                            hint=did_you_mean(prefix, layers) or f"layers: {', '.join(layers)}",
                        )
                    ],
                    source,
                )
            frozen += [m for m in matched if m not in frozen]
    for name, param in model.named_parameters():
        if layer_of(name) in frozen:
            param.requires_grad_(False)
    return frozen
