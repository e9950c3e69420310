"""The search space: entry parsing, corner checks against the config, conditional sampling."""

import optuna
import pytest

from tests.conftest import config_from
from tunekit.components.samplers import SAMPLERS
from tunekit.config.load import validate_document
from tunekit.config.sections import check_sections
from tunekit.config.space import SearchSpace, point_key
from tunekit.config.yaml_io import parse_yaml
from tunekit.errors import ConfigError

BASE = "data: {name: iris}\nmodel: {name: mlp, hidden: [8]}\noptimizer: {name: adamw, lr: 1e-3}\n"


def space_of(search: str) -> SearchSpace:
    config = config_from(BASE + "search:\n" + search, buildable=False)
    return SearchSpace.parse(config)[0]


def errors(search: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from(BASE + "search:\n" + search, "c.yaml", buildable=False)
    return info.value.lines()


def test_kinds_follow_the_bounds():
    space = space_of(
        "  optimizer.lr: {low: 1e-4, high: 1e-1, log: true}\n"
        "  train.epochs: {low: 2, high: 10, step: 2}\n"
        "  model.dropout: {low: 0, high: 0.5, type: float}\n"
        "  model.hidden: {choices: [[8], [16, 16]]}\n"
    )
    kinds = {p.key: p.kind for p in space}
    assert kinds == {
        "optimizer.lr": "float",
        "train.epochs": "int",
        "model.dropout": "float",
        "model.hidden": "categorical",
    }
    assert space.get("train.epochs").size() == 5 and space.size() is None


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ("optimizer.lr: {low: 0.1, high: 0.01}", "`low <= high` must hold, but got (low=0.1, high=0.01)"),
        ("optimizer.lr: {low: 0, high: 1, log: true}", "a log range needs low > 0"),
        ("optimizer.lr: {low: 0.1, high: 1, log: true, step: 0.1}", "step and log cannot be combined"),
        ("optimizer.lr: {choices: []}", "must be a non-empty list"),
        ("optimizer.lr: {choices: [0.1, 0.1]}", "duplicate choices: 0.1"),
        ("optimizer.lr: {low: 1}", "needs both low and high, or choices"),
        ("optimizer.lr: {lo: 1, high: 2}", "did you mean 'low'?"),
        ("optimizer.lr: {low: a, high: 2}", "must be a finite number"),
        ("optimizer.lr: [1, 2]", "must be {low: .., high: ..} or {choices: [...]}"),
        ("optimizer.lrr: {low: 0.1, high: 1}", "unknown key for optimizer 'adamw' (hint: did you mean 'lr'?)"),
        ("optimizer.lr: {low: -1.0, high: 1.0}", None),  # caught later by torch: see test_build
        ("model.activation: {choices: [relu, rleu]}", 'value "rleu" gives an invalid config'),
        ("train.epochs: {low: 1.5, high: 3, type: int}", "type int needs integer low, high and step"),
        ("init.weight: {choices: [zeros], when: {optimizer.name: [sgd]}}", "when: must name another search entry"),
    ],
)
def test_bad_entries(entry, fragment):
    if fragment is None:
        space_of(f"  {entry}\n")
        return
    lines = errors(f"  {entry}\n")
    assert any(fragment in line for line in lines), lines
    assert all(line.startswith("c.yaml:") for line in lines)


def test_condition_on_a_misspelled_entry_gets_a_hint():
    lines = errors(
        "  optimizer.name: {choices: [sgd, adam]}\n  init.weight: {choices: [zeros], when: {optimizer.nme: [sgd]}}\n"
    )
    assert lines == [
        "c.yaml:6: search.init.weight.when.optimizer.nme: when: must name another search entry (hint: did you mean 'optimizer.name'?)"
    ]


def test_argument_valid_for_only_some_components_needs_a_when():
    lines = errors("  optimizer.name: {choices: [sgd, adam, rmsprop]}\n  optimizer.momentum: {low: 0.5, high: 0.99}\n")
    assert lines == [
        "c.yaml:6: search.optimizer.momentum: not accepted when optimizer.name is adam (hint: add when: {optimizer.name: [sgd, rmsprop]})"
    ]


def sampled(space: SearchSpace, n: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, 0.0)
    return out


def test_conditional_entry_is_sampled_only_on_its_branch():
    space = space_of(
        "  optimizer.momentum: {low: 0.5, high: 0.99, when: {optimizer.name: [sgd]}}\n"  # listed first on purpose
        "  optimizer.name: {choices: [sgd, adam]}\n"
    )
    assert [p.key for p in space] == ["optimizer.name", "optimizer.momentum"]  # define-by-run order
    draws = sampled(space, 40)
    assert {d["optimizer.name"] for d in draws} == {"sgd", "adam"}
    for d in draws:
        assert ("optimizer.momentum" in d) == (d["optimizer.name"] == "sgd")


def test_every_sampled_trial_config_is_valid():
    config = validate_document(
        parse_yaml(
            "data: {name: iris}\noptimizer: {name: sgd, lr: 0.1, momentum: 0.9}\nsearch:\n"
            "  optimizer.name: {choices: [sgd, adam, rmsprop]}\n"
            "  optimizer.momentum: {low: 0.0, high: 0.9, when: {optimizer.name: [sgd, rmsprop]}}\n"
            "  model.hidden: {choices: [[4], [8, 8]]}\n"
        )
    )
    from tunekit.config.paths import apply_params

    space = SearchSpace.parse(config)[0]
    for values in sampled(space, 30):
        raw = apply_params(config.raw, values)
        assert check_sections(raw)[1] == []
        if values["optimizer.name"] == "adam":
            assert "momentum" not in raw["optimizer"]  # the base sgd momentum was dropped with sgd


def test_baseline_reproduces_base_values_inside_the_space():
    space = space_of(
        "  optimizer.lr: {low: 1e-4, high: 1e-1, log: true}\n  model.hidden: {choices: [[8], [16]]}\n  model.dropout: {low: 0.2, high: 0.5}\n"
    )
    config = config_from(BASE, buildable=False)
    base = space.baseline(config.raw)
    assert base == {"optimizer.lr": 1e-3, "model.hidden": "[8]"}  # dropout's base 0.0 lies outside [0.2, 0.5]


def test_fingerprint_changes_with_the_space():
    a = space_of("  optimizer.lr: {low: 1e-4, high: 1e-1, log: true}\n").fingerprint()
    b = space_of("  optimizer.lr: {low: 1e-4, high: 1e-1}\n").fingerprint()
    assert a != b and a == space_of("  optimizer.lr: {low: 1e-4, high: 1e-1, log: true}\n").fingerprint()


def test_the_space_size_is_the_number_of_grid_points():
    # A stepped int (4 points) and a stepped float range whose end is not on the step (0.1 .. 0.35
    # by 0.1: 0.1, 0.2, 0.3): 12 configs, and the grid sampler walks exactly those.
    config = config_from(
        BASE
        + "search:\n  train.epochs: {low: 2, high: 8, step: 2}\n  model.dropout: {low: 0.1, high: 0.35, step: 0.1}\n",
        buildable=False,
    )
    space, problems = SearchSpace.parse(config)
    assert problems == [] and space.size() == 12
    assert space.get("model.dropout").points() == [
        0.1,
        0.2,
        0.3,
    ]  # 0.1 + 2 * 0.1 stored as 0.3, not 0.30000000000000004
    grid = SAMPLERS.get("grid")(space, seed=0)
    assert len({point_key(p) for p in grid.points}) == len(grid.points) == space.size()


def test_inactive_entries_do_not_multiply_the_space():
    # momentum only under sgd: sgd x 2 momenta + adam = 3 configs (a product would say 4), x 2 batch sizes.
    config = config_from(
        BASE
        + "search:\n  optimizer.name: {choices: [sgd, adam]}\n"
        + "  optimizer.momentum: {choices: [0.0, 0.9], when: {optimizer.name: [sgd]}}\n"
        + "  train.batch_size: {choices: [16, 32]}\n",
        buildable=False,
    )
    space, problems = SearchSpace.parse(config)
    assert problems == [] and space.size() == 6
    points = space.points()
    assert len(points) == 6 and len({point_key(p) for p in points}) == 6
    assert all("optimizer.momentum" not in p for p in points if p["optimizer.name"] == "adam")
    assert SearchSpace.from_fingerprint(space.fingerprint()).size() == 6


def test_every_stage_reports_at_once_in_file_order():
    # A section problem, an entry with a bad shape and an entry that addresses nothing: all three.
    text = (
        "data: {name: iris}\n"
        "train: {epochs: 2, batchsize: 32}\n"
        "search:\n"
        "  optimizer.lr: {low: 1e-1, high: 1e-3, log: true}\n"
        "  optimizer.lrr: {low: 1e-3, high: 1e-1}\n"
    )
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(text, "c.yaml"))
    lines = info.value.lines()
    assert [line.split(":")[1:3] for line in lines] == [
        ["2", " train.batchsize"],
        ["4", " search.optimizer.lr"],
        ["5", " search.optimizer.lrr"],
    ], lines


def test_no_cascade_from_an_entry_or_section_with_problems():
    text = (
        "data: {name: iris}\n"
        "optimizer: {name: adamm}\n"  # the section's own problem; its entries' corners are not checked
        "search:\n"
        "  optimizer.lr: {low: 1e-3, high: 1e-1}\n"
        "  model.dropout: {low: 0.5, high: 0.1}\n"
        "  model.norm: {choices: [none, batch], when: {model.dropout: [0.2]}}\n"  # reads a broken entry
    )
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(text, "c.yaml"))
    assert [line.split(":")[2].strip() for line in info.value.lines()] == ["optimizer.name", "search.model.dropout"]


@pytest.mark.parametrize(
    "key", ["name", "seed", "study.trials", "study.sampler.name", "search", "train.device", "train.threads"]
)
def test_keys_a_study_cannot_vary(key):
    (line,) = errors(f"  {key}: {{choices: [1, 2]}}\n")
    assert f"search.{key}:" in line and "cannot" in line and "(hint: " in line


def test_a_search_key_cannot_index_into_a_list():
    (line,) = errors("  model.hidden.0: {choices: [4, 8]}\n")
    assert "search.model.hidden.0: a search key cannot index into a list" in line
    assert "search the whole list as choices instead" in line
    (line,) = errors("  model.hidden.first: {choices: [4, 8]}\n")
    assert "model.hidden is a list" in line and "search the whole list as choices instead" in line


def test_a_condition_on_a_continuous_range_is_an_error():
    (line,) = errors(
        "  optimizer.lr: {low: 1e-3, high: 1e-1}\n  optimizer.weight_decay: {low: 0, high: 0.1, when: {optimizer.lr: [0.01]}}\n"
    )
    assert "a condition on a continuous range never holds" in line and "give search.optimizer.lr a step" in line
    space_of(  # a stepped range has values to name
        "  optimizer.lr: {low: 0.01, high: 0.05, step: 0.01}\n"
        "  optimizer.weight_decay: {low: 0, high: 0.1, when: {optimizer.lr: [0.02]}}\n"
    )


def test_a_broken_data_section_does_not_hide_the_search_blocks_problems():
    text = "data: {name: irs}\nsearch:\n  optimizer.lrr: {low: 1e-3, high: 1e-1}\n  model..x: {low: 1, high: 2}\n"
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(text, "c.yaml"))
    lines = info.value.lines()
    assert len(lines) == 3, lines
    assert "data.name: unknown dataset 'irs'" in lines[0]
    assert "search.optimizer.lrr: value 0.001 gives an invalid config: unknown key" in lines[1]
    assert "search.model..x: is not a dotted key" in lines[2]
