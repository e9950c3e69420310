"""Config validation: strict types, typo hints, every problem at once, each with path and line."""

import pytest

from tunekit.config.load import load_config, parse_overrides, validate_document
from tunekit.config.paths import apply_params
from tunekit.config.sections import SECTIONS
from tunekit.config.yaml_io import parse_yaml
from tunekit.errors import ConfigError, UsageError


def problems(text: str, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(text, "c.yaml"), overrides)
    return info.value.lines()


def test_minimal_config_fills_defaults():
    config = validate_document(parse_yaml("data: {name: iris}\n"))
    assert (config.model.name, config.optimizer.name, config.schedule.name) == ("mlp", "adamw", "constant")
    assert config.train.epochs == 20 and config.sampler.name == "tpe" and config.pruner.name == "median"


def test_every_problem_is_reported_at_once_with_lines():
    text = """\
data: {name: digts}
model: {name: mlp, hiden: [64], activation: rleu}
optimizer: {name: adamw, lr: '1e-3'}
train: {epochs: true, batch_size: fulll}
studdy: {}
"""
    assert problems(text) == [  # in file order
        "c.yaml:1: data.name: unknown dataset 'digts' (hint: did you mean 'digits'?)",
        "c.yaml:2: model.hiden: unknown key for model 'mlp' (hint: did you mean 'hidden'?)",
        "c.yaml:2: model.activation: 'rleu' is not one of: relu, leaky_relu, elu, selu, gelu, silu, mish, tanh, sigmoid, softplus, identity (hint: did you mean 'relu'?)",
        "c.yaml:3: optimizer.lr: Input should be a valid number, got str '1e-3' (hint: write numbers without quotes)",
        "c.yaml:4: train.epochs: Input should be a valid integer, got bool True",
        "c.yaml:4: train.batch_size: must be an integer or 'full', got 'fulll' (did you mean 'full'?)",
        "c.yaml:5: studdy: unknown section (hint: did you mean 'study'?)",
    ]


def test_plain_nan_is_a_string_in_yaml_1_2():
    assert (
        "optimizer.momentum: Input should be a valid number, got str 'nan'"
        in problems("data: {name: iris}\noptimizer: {name: sgd, momentum: nan}\n")[0]
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data: {name: iris}\noptimizer: {name: sgd, momentum: .nan}\n", "optimizer.momentum: must be a finite number"),
        ("data: {name: iris}\ntrain: {epochs: 0}\n", "train.epochs: Input should be greater than or equal to 1"),
        ("data: {name: iris}\ntrain: {batch_size: 0}\n", "train.batch_size: must be >= 1"),
        ("data: {name: iris}\ntrain: {grad_clip: {norm: 1, value: 2}}\n", "give exactly one of norm or value"),
        ("data: {name: iris}\ntrain: {device: gpu}\n", "train.device: must be auto, cpu, cuda, cuda:N or mps"),
        ("data: {name: iris, val_fraction: 0.6, test_fraction: 0.5}\n", "val_fraction + test_fraction must be < 1"),
        ("data: {name: csv}\n", "data.path: required key is missing"),
        ("data: {name: iris}\nseed: -1\n", "seed: must be a non-negative integer"),
        ("data: {name: iris}\noptimizer: {name: adam, betas: [0.9]}\n", "optimizer.betas"),
        ("data: {name: iris}\noptimizer: adam\n", "optimizer: must be a mapping"),
        ("model: {name: mlp}\n", "data: required section is missing"),
        ("data: {name: iris}\nstudy: {pruner: {name: median, warmup_epoch: 2}}\n", "did you mean 'warmup_epochs'?"),
        ("data: {name: iris}\nstudy: {sampler: {name: tpee}}\n", "unknown sampler 'tpee' (hint: did you mean 'tpe'?)"),
        ("data: {name: iris}\ninit: {weight: xavier, bias: zeros}\n", "unknown weight init 'xavier'"),
        ("data: {name: iris}\nschedule: {name: cosine, warmup_epochs: -1}\n", "schedule.warmup_epochs"),
    ],
)
def test_bad_values_name_their_key(text, expected):
    assert any(expected in line for line in problems(text)), problems(text)


def test_component_arguments_come_from_the_builder_signature():
    # sgd takes momentum, adam does not: the config accepts exactly what the code takes.
    validate_document(parse_yaml("data: {name: iris}\noptimizer: {name: sgd, momentum: 0.9, nesterov: true}\n"))
    assert problems("data: {name: iris}\noptimizer: {name: adam, momentum: 0.9}\n")[0].startswith(
        "c.yaml:2: optimizer.momentum: unknown key for optimizer 'adam'"
    )


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_section_rejects_unknown_keys(section):
    body = "{name: iris, bogus_key: 1}" if section == "data" else "{bogus_key: 1}"
    text = f"{section}: {body}\n" if section == "data" else f"data: {{name: iris}}\n{section}: {body}\n"
    if section == "loss":
        text = "data: {name: iris}\nloss: {name: cross_entropy, bogus_key: 1}\n"
    assert any(f"{section}.bogus_key: unknown key" in line for line in problems(text))


def test_set_overrides_are_parsed_as_yaml_and_validated():
    config = validate_document(
        parse_yaml("data: {name: iris}\n"), parse_overrides(["optimizer.lr=3e-4", "model.hidden=[8, 8]"])
    )
    assert config.optimizer.args["lr"] == 3e-4 and config.model.args["hidden"] == [8, 8]
    assert any(
        "optimizer.lrr: unknown key" in line
        for line in problems("data: {name: iris}\n", parse_overrides(["optimizer.lrr=1"]))
    )


@pytest.mark.parametrize("bad", ["optimizer.lr", "=3", "a..b=1", "optimizer.lr=[1,"])
def test_bad_set_syntax_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        parse_overrides([bad])


def test_switching_component_drops_arguments_it_does_not_take():
    raw = {"data": {"name": "iris"}, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "search": {}}
    out = apply_params(raw, {"optimizer.name": "adam"})
    assert out["optimizer"] == {"name": "adam", "lr": 0.1}
    assert "search" not in out and raw["optimizer"]["momentum"] == 0.9  # the base is untouched


def test_load_config_reads_files(write_config):
    path = write_config()
    assert load_config(str(path), ["train.epochs=5"]).train.epochs == 5
