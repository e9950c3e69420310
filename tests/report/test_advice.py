"""The report's advice fires on the studies it describes and stays silent on healthy ones."""

import math

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from tunekit.report.advice import sparkline
from tunekit.report.summary import summarize

LR = {"kind": "float", "low": 1e-4, "high": 1.0, "log": True, "step": None, "choices": [], "when": {}}
ACT = {
    "kind": "categorical",
    "low": None,
    "high": None,
    "log": False,
    "step": None,
    "choices": ["relu", "tanh"],
    "when": {},
}


def study_of(points, space=None):
    """points: (lr, act, value or None, reason) tuples; None value = FAIL with reason."""
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("tunekit.metric", "val_accuracy")
    study.set_user_attr("tunekit.space", space or {"optimizer.lr": LR, "model.activation": ACT})
    dists = {
        "optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
        "model.activation": CategoricalDistribution(["relu", "tanh"]),
    }
    for lr, act, value, reason in points:
        state = TrialState.COMPLETE if value is not None else TrialState.FAIL
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"optimizer.lr": lr, "model.activation": act},
                distributions=dists,
                user_attrs={"reason": reason} if reason else {},
            )
        )
    return study


def healthy_points(n=30):
    # Peak accuracy at lr = 1e-2, well inside [1e-4, 1]; activation matters a little.
    out = []
    for i in range(n):
        lr = 10 ** (-4 + 4 * (i + 0.5) / n)
        value = 0.95 - 0.05 * (math.log10(lr) + 2) ** 2 - (0.02 if i % 2 else 0.0)
        out.append((lr, ["relu", "tanh"][i % 2], value, None))
    return out


def test_healthy_study_gets_no_advice():
    summary = summarize(study_of(healthy_points()), "mem")
    assert summary["advice"] == []


def test_best_value_at_the_edge_of_its_range():
    points = [
        (lr, act, 0.5 + 0.4 * (math.log10(lr) + 4) / 4, None) for lr, act, _, _ in healthy_points()
    ]  # better and better as lr grows
    advice = summarize(study_of(points), "mem")["advice"]
    assert any(
        a.startswith("optimizer.lr: the best value")
        and "top of its range" in a
        and "raise `high`" in a
        and "rerun the same search: a wider range continues this study" in a
        for a in advice
    )


def test_region_that_always_diverges():
    points = []
    for lr, act, value, _ in healthy_points():
        if lr > 0.2:
            points.append((lr, act, None, "nonfinite_loss"))
        else:
            points.append((lr, act, value, None))
    advice = summarize(study_of(points), "mem")["advice"]
    claim = [a for a in advice if "diverged in" in a]
    assert claim == [
        "optimizer.lr >= 0.251 diverged in 5 of 5 trials; lower `high` below 0.251 and search with --study NEW_NAME "
        "(a narrower space is a new study; this one does not resume with it)"
    ]


def test_negligible_parameter():
    # Accuracy depends on lr alone; activation only adds noise far below anything that matters.
    points = [
        (lr, act, 0.95 - 0.05 * (math.log10(lr) + 2) ** 2 + (1e-9 if act == "tanh" else 0.0), None)
        for lr, act, _, _ in healthy_points()
    ]
    advice = summarize(study_of(points), "mem")["advice"]
    assert any(a.startswith("model.activation: barely matters") for a in advice)


def test_too_few_trials():
    advice = summarize(study_of(healthy_points(6)), "mem")["advice"]
    assert any("6 completed or pruned trials for 2 searched parameters" in a and "--trials 20" in a for a in advice)


def test_sparkline_tracks_best_so_far():
    assert sparkline([0.1, 0.5, 0.3, 0.9], maximize=True) == "▁▄▄█"
    assert sparkline([3.0, 2.0, 2.5, 1.0], maximize=False) == "▁▄▄█"
    assert len(sparkline(list(range(500)), maximize=True, width=40)) == 40


def test_a_finished_grid_is_not_told_to_continue():
    # lr on 3 choices x activation on 2: six configs, all tried (one failed) -> nothing left to run.
    lr = {**LR, "kind": "categorical", "low": None, "high": None, "log": False, "choices": [0.001, 0.01, 0.1]}
    points = [(v, act, 0.9, None) for v in (0.001, 0.01, 0.1) for act in ("relu", "tanh")]
    points[-1] = (0.1, "tanh", None, "error")
    advice = summarize(study_of(points, {"optimizer.lr": lr, "model.activation": ACT}), "mem")["advice"]
    assert not any("--trials" in a for a in advice)
    fewer = summarize(study_of(points[:3], {"optimizer.lr": lr, "model.activation": ACT}), "mem")["advice"]
    assert any("continue with --trials 6" in a for a in fewer)  # the true number of configs, not 20


def study_with(space, dists, rows, direction="maximize"):
    """rows: (params, value or None, reason); None value = FAIL with that reason."""
    study = optuna.create_study(direction=direction)
    study.set_user_attr("tunekit.metric", "val_accuracy")
    study.set_user_attr("tunekit.space", space)
    for params, value, reason in rows:
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
                value=value,
                params=params,
                distributions={k: dists[k] for k in params},
                user_attrs={"reason": reason} if reason else {},
            )
        )
    return study


def sigmoid_vs_relu(n=30):
    # A deep net: every sigmoid trial fails with vanishing gradients; relu trials complete, lr decides how well.
    rows = []
    for i, (lr, _, value, _) in enumerate(healthy_points(n)):
        act = ["sigmoid", "relu"][i % 2]
        rows.append(({"optimizer.lr": lr, "model.activation": act}, value if act == "relu" else None, None))
        if act == "sigmoid":
            rows[-1] = (rows[-1][0], None, "vanishing_gradients")
    space = {"optimizer.lr": LR, "model.activation": {**ACT, "choices": ["sigmoid", "relu"]}}
    dists = {
        "optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
        "model.activation": CategoricalDistribution(["sigmoid", "relu"]),
    }
    return study_with(space, dists, rows)


def test_a_parameter_that_decides_failure_is_important():
    summary = summarize(sigmoid_vs_relu(), "mem")
    # Failed trials count as the worst completed value: activation decides half the outcomes (on the
    # completed trials alone, every one relu, it would score 0).
    assert summary["importance"]["model.activation"] >= 0.05, summary["importance"]
    assert not any(a.startswith("model.activation: barely matters") for a in summary["advice"])
    assert any(
        a.startswith('model.activation = "sigmoid" failed in 15 of 15 trials (vanishing_gradients)')
        and "drop it from `choices`" in a
        and "--study NEW_NAME" in a
        for a in summary["advice"]
    ), summary["advice"]


def test_interrupted_trials_are_not_counted_as_failures_of_their_config():
    study = sigmoid_vs_relu()
    summary = summarize(study, "mem")
    interrupted = study_with(
        study.user_attrs["tunekit.space"],
        {k: v for t in study.trials for k, v in t.distributions.items()},
        [(t.params, t.value, "interrupted" if t.state == TrialState.FAIL else None) for t in study.trials],
    )
    calm = summarize(interrupted, "mem")
    assert calm["importance"] != summary["importance"]
    assert not any("failed in" in a for a in calm["advice"])


def test_no_advice_about_entries_that_cannot_vary():
    one = {**ACT, "choices": ["relu"]}
    fixed = {**LR, "low": 0.01, "high": 0.01, "log": False}
    space = {"optimizer.lr": LR, "model.activation": one, "optimizer.weight_decay": fixed}
    dists = {
        "optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
        "model.activation": CategoricalDistribution(["relu"]),
        "optimizer.weight_decay": FloatDistribution(0.01, 0.01),
    }
    rows = [
        ({"optimizer.lr": lr, "model.activation": "relu", "optimizer.weight_decay": 0.01}, value, None)
        for lr, _, value, _ in healthy_points(12)
    ]
    advice = summarize(study_with(space, dists, rows), "mem")["advice"]
    assert not any("model.activation" in a or "weight_decay" in a for a in advice), advice
    # Only lr varies: 12 trials are enough for one parameter.
    assert not any("--trials" in a for a in advice), advice


def test_divergence_on_numeric_choices():
    lrs = [0.001, 0.01, 1.0, 10.0]
    space = {"optimizer.lr": {**LR, "kind": "categorical", "low": None, "high": None, "log": False, "choices": lrs}}
    dists = {"optimizer.lr": CategoricalDistribution(lrs)}
    rows = [
        ({"optimizer.lr": lr}, None if lr >= 1 else 0.9 - (0.05 if lr == 0.001 else 0.0), "nonfinite_loss")
        for _ in range(3)
        for lr in lrs
    ]
    rows = [(p, v, r if v is None else None) for p, v, r in rows]
    advice = summarize(study_with(space, dists, rows), "mem")["advice"]
    assert advice[0] == (
        "optimizer.lr >= 1 diverged in 6 of 6 trials; drop the values >= 1 from `choices` and search with "
        "--study NEW_NAME (a narrower space is a new study; this one does not resume with it)"
    ), advice
    assert not any("optimizer.lr = " in a or "optimizer.lr in {" in a for a in advice)  # said once


def test_no_advice_to_cross_a_bound_no_value_can():
    # Best dropout at 0 and the best smoothing at 1.0: lowering below 0 or raising above 1 is never valid.
    drop = {**LR, "low": 0.0, "high": 0.5, "log": False}
    frac = {**LR, "low": 0.0, "high": 1.0, "log": False}
    space = {"model.dropout": drop, "loss.label_smoothing": frac}
    dists = {"model.dropout": FloatDistribution(0.0, 0.5), "loss.label_smoothing": FloatDistribution(0.0, 1.0)}
    rows = [({"model.dropout": 0.5 * i / 29, "loss.label_smoothing": i / 29}, 0.9 - i / 100, None) for i in range(30)]
    rows += [({"model.dropout": 0.0, "loss.label_smoothing": 1.0}, 0.95, None)]
    advice = summarize(study_with(space, dists, rows), "mem")["advice"]
    assert not any("range" in a for a in advice), advice


def test_no_edge_advice_on_a_handful_of_stepped_values():
    stepped = {**LR, "low": 0.01, "high": 0.03, "log": False, "step": 0.01}
    space = {"optimizer.lr": stepped}
    dists = {"optimizer.lr": FloatDistribution(0.01, 0.03, step=0.01)}
    rows = [({"optimizer.lr": v}, 0.5 + 10 * v, None) for v in (0.01, 0.02, 0.03) for _ in range(4)]
    advice = summarize(study_with(space, dists, rows), "mem")["advice"]
    assert not any("range" in a for a in advice), advice
