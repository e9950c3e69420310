"""Which changes of a search entry continue a study: only a float/int range that widened."""

import pytest

from tunekit.study.resume import _added_choices, _widening

LR = {"kind": "float", "low": 1e-3, "high": 0.1, "log": True, "step": None, "choices": [], "when": {}}
EPOCHS = {"kind": "int", "low": 2, "high": 10, "log": False, "step": 2, "choices": [], "when": {}}


def test_a_wider_range_continues():
    assert _widening(LR, {**LR, "low": 1e-4, "high": 0.5}) == "[0.001, 0.1] log -> [0.0001, 0.5] log"
    assert _widening(EPOCHS, {**EPOCHS, "low": 0, "high": 14}) == "[2, 10] step 2 -> [0, 14] step 2"


@pytest.mark.parametrize(
    "new",
    [
        {**LR, "high": 0.05},  # narrower
        {**LR, "low": 1e-4, "high": 0.05},  # wider at one end, narrower at the other
        {**LR, "high": 0.5, "log": False},  # another log
        {**LR, "high": 0.5, "when": {"optimizer.name": ["sgd"]}},  # another condition
        {**LR, "kind": "int"},
        LR,  # unchanged: nothing to note
    ],
)
def test_anything_else_is_refused(new):
    assert _widening(LR, new) is None


def test_a_stepped_range_widens_only_on_its_grid():
    assert _widening(EPOCHS, {**EPOCHS, "low": 1}) is None  # 2, 4, ... would no longer be on the grid
    assert _widening(EPOCHS, {**EPOCHS, "step": 1, "low": 1}) is None


def test_added_choices_are_recognised_for_the_hint():
    act = {**LR, "kind": "categorical", "low": None, "high": None, "log": False, "choices": ["relu", "tanh"]}
    assert _added_choices(act, {**act, "choices": ["relu", "tanh", "gelu"]})
    assert not _added_choices(act, {**act, "choices": ["relu"]})
