"""Fine-tuning from a real checkpoint: frozen layers stay bit-identical, the rest learns."""

import pytest
import torch

from tests.conftest import config_from
from tunekit.errors import ConfigError, DataError
from tunekit.study.retrain import train_config
from tunekit.train.build import build_run
from tunekit.train.trainer import fit

BASE = "data: {name: digits}\nmodel: {name: mlp, hidden: [32, 32]}\noptimizer: {name: adamw, lr: 0.01, weight_decay: 0.1}\ntrain: {epochs: 2}\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    train_config(config_from(BASE), out, seed=0)
    return out / "model.pt"


def finetune_run(checkpoint, finetune: str):
    text = BASE.replace(
        "train: {epochs: 2}", f"train: {{epochs: 2, finetune: {{checkpoint: '{checkpoint}', {finetune}}}}}"
    )
    config = config_from(text, "ft.yaml")
    return build_run(config, torch.device("cpu"), seed=1)


@pytest.mark.parametrize("freeze", ["freeze: [blocks.0]", "freeze: 1"])
def test_frozen_layers_stay_bit_identical(checkpoint, freeze):
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    run = finetune_run(checkpoint, freeze)
    assert torch.equal(run.model.state_dict()["blocks.0.linear.weight"], saved["blocks.0.linear.weight"])  # loaded
    fit(run, seed=1, monitor="val_accuracy", direction="maximize")
    after = run.model.state_dict()
    for key in ("blocks.0.linear.weight", "blocks.0.linear.bias"):
        assert torch.equal(after[key], saved[key])  # frozen: no update, no weight decay
    assert not torch.equal(after["blocks.1.linear.weight"], saved["blocks.1.linear.weight"])
    assert not torch.equal(after["head.weight"], saved["head.weight"])


def test_bad_freeze_name_and_bad_checkpoint(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="no layer named 'block.0'.*did you mean 'blocks.0'"):
        finetune_run(checkpoint, "freeze: [block.0]")
    with pytest.raises(DataError, match="checkpoint not found"):
        finetune_run(tmp_path / "none.pt", "freeze: 1")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot be loaded safely"):
        finetune_run(corrupt, "freeze: 1")


def test_checkpoint_that_needs_unsafe_loading_is_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "extra": argparse.Namespace(code="anything")}, path)  # not a plain type
    from tunekit.train.finetune import load_checkpoint

    with pytest.raises(DataError, match="refusing to unpickle") as info:
        load_checkpoint(str(path))
    assert "weights_only=True" in info.value.hint


def test_checkpoint_of_another_architecture_is_refused(checkpoint):
    text = BASE.replace("hidden: [32, 32]", "hidden: [16]").replace(
        "train: {epochs: 2}", f"train: {{finetune: {{checkpoint: '{checkpoint}'}}}}"
    )
    with pytest.raises(ConfigError, match="does not fit this model"):
        config_from(text)
