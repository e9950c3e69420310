"""Each schedule's learning rate per unit matches its textbook formula, warmup included."""

import math

import pytest
import torch

from tunekit.components.schedules import SCHEDULES, build_schedule


def lrs(
    name,
    args=None,
    epochs=10,
    warmup_epochs=0,
    warmup_steps=0,
    interval="epoch",
    steps_per_epoch=1,
    base=1.0,
    losses=None,
):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    schedule = build_schedule(opt, name, args or {}, warmup_epochs, warmup_steps, interval, epochs, steps_per_epoch)
    out = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            out.append(schedule.lr)
            schedule.after_step()
        schedule.after_epoch(losses[epoch] if losses else 1.0)
    return out


def close(a, b):
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b, strict=True))


def test_constant():
    assert lrs("constant") == [1.0] * 10


def test_step():
    assert close(lrs("step", {"step_size": 3, "gamma": 0.5}), [0.5 ** (e // 3) for e in range(10)])


def test_multistep():
    assert close(
        lrs("multistep", {"milestones": [2, 5], "gamma": 0.1}), [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01]
    )


def test_exponential():
    assert close(lrs("exponential", {"gamma": 0.9}), [0.9**e for e in range(10)])


def test_cosine_with_warmup():
    got = lrs("cosine", {"min_factor": 0.0}, warmup_epochs=2)
    expected = [1 / 3, 2 / 3] + [0.5 * (1 + math.cos(math.pi * u / 8)) for u in range(8)]
    assert close(got, expected)


def test_cosine_restarts():
    got = lrs("cosine_restarts", {"period": 4})
    assert close(got, [0.5 * (1 + math.cos(math.pi * (e % 4) / 4)) for e in range(10)])


def test_cyclic_triangular():
    assert close(lrs("cyclic", {"period": 4, "base_factor": 0.2}, epochs=8), [0.2, 0.6, 1.0, 0.6, 0.2, 0.6, 1.0, 0.6])


def test_onecycle_rises_then_falls():
    got = lrs("onecycle", {"pct_start": 0.3, "div_factor": 10, "final_div_factor": 100}, epochs=20)
    peak = got.index(max(got))
    assert math.isclose(got[0], 0.1) and math.isclose(max(got), 1.0) and peak == 6
    assert got[-1] < 0.01 and all(a >= b for a, b in zip(got[peak:], got[peak + 1 :]))


def test_linear_and_polynomial():
    assert close(lrs("linear", {"end_factor": 0.0}), [1 - e / 10 for e in range(10)])
    assert close(lrs("polynomial", {"power": 2.0}), [(1 - e / 10) ** 2 for e in range(10)])


def test_plateau_reduces_after_patience():
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    got = lrs("plateau", {"factor": 0.5, "patience": 2}, losses=losses)
    assert got[:5] == [1.0] * 5 and got[5] == 0.5 and got[8] == 0.25


def test_per_step_interval_with_warmup_steps():
    got = lrs("linear", {"end_factor": 0.0}, epochs=2, interval="step", steps_per_epoch=5, warmup_steps=4)
    assert close(got[:4], [0.2, 0.4, 0.6, 0.8]) and close(got[4:], [1 - u / 6 for u in range(6)])


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_stays_positive_and_bounded(name):
    got = lrs(name, epochs=12, warmup_epochs=1)
    assert all(0 <= x <= 1.0 + 1e-12 for x in got)
