"""Population training (tunekit/population.py): several runs trained as one vmapped model must end
exactly where each would have ended alone, leave one by one, and refuse what cannot be vectorized."""

import math

import pytest
import torch

from tunekit.config.paths import apply_params
from tunekit.config.sections import check_sections
from tunekit.config.space import SearchSpace
from tunekit.train.build import build_run
from tunekit.train.trainer import Diverged, fit
from tunekit.train.vectorized import STACKED_OPTIMIZERS, fit_population, is_member_key, population_problems, why_not

BASE = {
    "name": "pop",
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [24, 16], "dropout": 0.0},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "loss": {"name": "cross_entropy"},
    "train": {"epochs": 3, "batch_size": 64},
    "study": {"metric": "val_accuracy", "direction": "maximize"},
}
CPU = torch.device("cpu")


def config(**params):
    raw, problems = apply_params(BASE, params), None
    cfg, problems = check_sections(raw)
    assert not problems, problems
    return cfg


def alone(cfg, seed, shuffle_seed):
    run = build_run(cfg, CPU, seed)
    return run, fit(run, seed=seed, shuffle_seed=shuffle_seed, monitor="val_accuracy", direction="maximize")


def together(cfgs, seeds, **kwargs):
    runs = [build_run(c, CPU, s) for c, s in zip(cfgs, seeds)]
    return runs, fit_population(runs, shuffle_seed=seeds[0], monitor="val_accuracy", direction="maximize", **kwargs)


def assert_same_run(run_a, result_a, run_b, result_b, tol=2e-5, grad_rel=1e-3):
    assert [h.epoch for h in result_a.history] == [h.epoch for h in result_b.history]
    for a, b in zip(result_a.history, result_b.history):
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-4, abs=1e-6)
        assert a.metrics["lr"] == pytest.approx(b.metrics["lr"])
        assert a.layer_grad_norms.keys() == b.layer_grad_norms.keys()
        for layer in a.layer_grad_norms:
            assert a.layer_grad_norms[layer] == pytest.approx(b.layer_grad_norms[layer], rel=grad_rel, abs=1e-6)
    assert result_a.best_epoch == result_b.best_epoch
    for (name, wa), wb in zip(run_a.model.state_dict().items(), run_b.model.state_dict().values()):
        assert torch.allclose(wa, wb, atol=tol, rtol=1e-4), name


# Each optimizer with members that differ in every number it has, plus a schedule stepping per
# batch with warmup, so per-member lr changes every step.
MEMBERS = {
    "sgd": [
        {"optimizer.lr": 0.05, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-3},
        {"optimizer.lr": 0.02, "optimizer.momentum": 0.5, "optimizer.dampening": 0.1},
        {"optimizer.lr": 0.1, "optimizer.momentum": 0.0},
    ],
    "adam": [
        {"optimizer.lr": 0.01, "optimizer.betas": [0.8, 0.99]},
        {"optimizer.lr": 0.003, "optimizer.weight_decay": 1e-2, "optimizer.eps": 1e-6},
    ],
    "adamw": [
        {"optimizer.lr": 0.01, "optimizer.weight_decay": 0.1},
        {"optimizer.lr": 0.002, "optimizer.betas": [0.95, 0.9]},
    ],
    "rmsprop": [
        {"optimizer.lr": 0.003, "optimizer.momentum": 0.5, "optimizer.alpha": 0.9},
        {"optimizer.lr": 0.001, "optimizer.weight_decay": 1e-3},
    ],
    "adagrad": [
        {"optimizer.lr": 0.05, "optimizer.lr_decay": 0.01, "optimizer.initial_accumulator_value": 0.1},
        {"optimizer.lr": 0.02},
    ],
}


@pytest.mark.parametrize("name", STACKED_OPTIMIZERS)
def test_each_member_ends_where_it_would_have_ended_alone(name):
    shared = {
        "optimizer.name": name,
        "schedule.name": "cosine",
        "schedule.interval": "step",
        "schedule.warmup_steps": 10,
    }
    cfgs = [config(**shared, **member) for member in MEMBERS[name]]
    seeds = [11 + i for i in range(len(cfgs))]
    runs, results = together(cfgs, seeds)
    for cfg, seed, run, result in zip(cfgs, seeds, runs, results):
        assert_same_run(run, result, *alone(cfg, seed, shuffle_seed=seeds[0]))


@pytest.mark.parametrize(
    "shared, lrs",
    [
        ({"optimizer.nesterov": True, "optimizer.momentum": 0.9, "train.grad_clip": 0.5}, (0.03, 0.01)),
        ({"optimizer.name": "adam", "optimizer.amsgrad": True, "train.grad_clip": {"value": 0.01}}, (0.01, 0.003)),
        # Centered RMSprop divides by a running variance that float rounding moves; at lr 1e-3 that was
        # amplified past 1e-4 on some BLAS builds, so smaller steps compare the maths, not the rounding.
        ({"optimizer.name": "rmsprop", "optimizer.centered": True, "optimizer.momentum": 0.3}, (0.0003, 0.0001)),
        (
            {"model.weight_norm": True, "model.residual": True, "model.norm": "layer", "model.hidden": [16, 16]},
            (0.03, 0.01),
        ),
        ({"schedule.name": "plateau", "schedule.patience": 0, "schedule.factor": 0.5}, (0.03, 0.01)),
    ],
)
def test_flags_clipping_weight_norm_and_plateau_match_alone(shared, lrs):
    cfgs = [
        config(**shared, **{"optimizer.lr": lr, "init.weight": init})
        for lr, init in zip(lrs, ["xavier_uniform", "kaiming_normal"])
    ]
    runs, results = together(cfgs, [3, 4])
    for cfg, seed, run, result in zip(cfgs, [3, 4], runs, results):
        assert_same_run(run, result, *alone(cfg, seed, shuffle_seed=3))


def test_a_convolutional_population_matches_alone():
    conv = {"data.as_images": True, "model.name": "cnn", "model.channels": [4, 8], "model.norm": "none"}
    cfgs = [config(**conv, **{"optimizer.lr": lr}) for lr in (0.05, 0.01)]
    runs, results = together(cfgs, [1, 2])
    for cfg, seed, run, result in zip(cfgs, [1, 2], runs, results):
        # Max pooling routes a gradient to one of near-tied inputs, which float rounding can flip: the
        # reported norm of one batch's gradient may move by a fraction of a percent, the weights do not.
        assert_same_run(run, result, *alone(cfg, seed, shuffle_seed=1), grad_rel=1e-2)


def test_a_member_that_diverges_leaves_and_the_others_are_untouched():
    cfgs = [config(**{"optimizer.lr": 0.05}), config(**{"optimizer.lr": 1e6}), config(**{"optimizer.lr": 0.01})]
    runs, results = together(cfgs, [1, 2, 3])
    assert isinstance(results[1], Diverged) and results[1].reason in ("nonfinite_loss", "exploding_gradients")
    for i in (0, 2):
        assert_same_run(runs[i], results[i], *alone(cfgs[i], [1, 2, 3][i], shuffle_seed=1))


def test_a_member_whose_callback_raises_leaves_at_that_epoch():
    class Pruned(Exception):
        pass

    seen = {0: [], 1: []}

    def callback(i, prune_at=None):
        def on_epoch(record):
            seen[i].append(record.epoch)
            if record.epoch == prune_at:
                raise Pruned()

        return on_epoch

    cfgs = [config(**{"optimizer.lr": 0.05}), config(**{"optimizer.lr": 0.02})]
    runs, results = together(cfgs, [5, 6], on_epoch=[callback(0), callback(1, prune_at=1)])
    assert isinstance(results[1], Pruned) and seen == {0: [1, 2, 3], 1: [1]}
    assert_same_run(runs[0], results[0], *alone(cfgs[0], 5, shuffle_seed=5))


def test_early_stopping_is_per_member():
    stop = {"train.epochs": 8, "train.early_stopping": {"patience": 1, "metric": "train_loss", "min_delta": 0.5}}
    cfgs = [
        config(**stop, **{"optimizer.lr": 0.5}),
        config(**{**stop, "train.early_stopping": None}, **{"optimizer.lr": 0.01}),
    ]
    runs, results = together(cfgs, [7, 8])
    assert results[0].stopped_early and len(results[0].history) < 8
    assert not results[1].stopped_early and len(results[1].history) == 8
    assert_same_run(runs[0], results[0], *alone(cfgs[0], 7, shuffle_seed=7))


def test_dropout_masks_differ_between_members():
    cfgs = [config(**{"model.dropout": 0.5}), config(**{"model.dropout": 0.5})]
    runs, results = together(cfgs, [9, 9])  # same init: only the masks can tell them apart
    first, second = (r.history[0].metrics["train_loss"] for r in results)
    assert first != second and math.isfinite(first) and math.isfinite(second)


@pytest.mark.parametrize(
    "params, key, words",
    [
        ({"optimizer.name": "nadam"}, "optimizer.name", "optimizer 'nadam' has no vectorized form"),
        ({"model.norm": "batch"}, "model.norm", "batch norm"),
        ({"train.compile": True}, "train.compile", "train.compile is on"),
        ({"train.precision": "fp16"}, "train.precision", "fp16 needs a gradient scaler"),
    ],
)
def test_what_cannot_be_vectorized_says_why(params, key, words):
    blocked = why_not(build_run(config(**params), CPU, 0))
    assert blocked is not None and blocked[0] == key and words in blocked[1]
    assert why_not(build_run(config(), CPU, 0)) is None


def test_on_the_cpu_a_large_model_trains_one_at_a_time_but_is_no_config_error():
    big = build_run(config(**{"model.hidden": [512, 512]}), CPU, 0)
    key, words = why_not(big)
    assert key == "model" and "on CPU cores a population is faster only below 200,000" in words
    assert why_not(big, size=False) is None


def test_population_problems_spare_a_searched_key():
    raw = {
        **apply_params(BASE, {"optimizer.name": "nadam", "study.population": 4}),
        "search": {"optimizer.lr": {"low": 1e-3, "high": 1e-1}},
    }
    cfg, _ = check_sections(raw)
    space, _ = SearchSpace.parse(cfg)
    run = build_run(cfg, CPU, 0)
    [problem] = population_problems(cfg, space, run)
    assert problem.path == "study.population" and "nadam" in problem.message
    raw["search"]["optimizer.name"] = {"choices": ["nadam", "sgd"]}  # some trials may fit: they will train together
    cfg, _ = check_sections(raw)
    space, _ = SearchSpace.parse(cfg)
    assert population_problems(cfg, space, run) == []


def test_member_keys_are_numbers_init_and_schedule_not_shapes_or_flags():
    assert all(
        map(
            is_member_key,
            ["optimizer.lr", "optimizer.momentum", "optimizer.betas", "init.weight", "schedule.name", "seed"],
        )
    )
    assert not any(
        map(
            is_member_key,
            ["optimizer.name", "optimizer.nesterov", "model.hidden", "model.dropout", "train.batch_size", "loss.name"],
        )
    )


def test_each_member_ends_as_soon_as_it_leaves_not_when_the_population_does():
    """on_end[i] gets run i's outcome the moment it has one: a member whose callback raises at
    epoch 1 is ended before the others' later epochs; the others end after their last epoch."""
    events = []

    class Stop(Exception):
        pass

    def on_epoch(i):
        def callback(record):
            events.append(("epoch", i, record.epoch))
            if i == 1:
                raise Stop(record.epoch)

        return callback

    def on_end(i):
        return lambda outcome: events.append(("end", i, type(outcome).__name__))

    cfgs = [config(**{"optimizer.lr": lr}) for lr in (0.05, 0.02, 0.01)]
    _, results = together(
        cfgs, [1, 2, 3], on_epoch=[on_epoch(i) for i in range(3)], on_end=[on_end(i) for i in range(3)]
    )
    assert isinstance(results[1], Stop) and all(not isinstance(r, Exception) for r in (results[0], results[2]))
    assert events.index(("end", 1, "Stop")) < events.index(("epoch", 0, 2))
    assert events[-2:] == [("end", 0, "FitResult"), ("end", 2, "FitResult")]
    assert [e for e in events if e[0] == "end"] == [
        ("end", 1, "Stop"),
        ("end", 0, "FitResult"),
        ("end", 2, "FitResult"),
    ]


def test_what_an_end_hook_raises_stops_the_population():
    """A hook's error (the study's storage went away while telling) is not one member's outcome."""

    def on_end(outcome):
        raise OSError("storage gone")

    cfgs = [config(**{"optimizer.lr": lr}) for lr in (0.05, 0.02)]
    with pytest.raises(OSError, match="storage gone"):
        together(cfgs, [1, 2], on_end=[on_end, None])
