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
        a.startswith("optimizer.lr: the best value") and "top of its range" in a and "raise `high`" in a for a in advice
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
    assert claim == ["optimizer.lr >= 0.251 diverged in 5 of 5 trials; move `high` to exclude that region"]


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
