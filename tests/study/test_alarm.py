"""The --timeout alarm (tunekit/study/alarm.py): it raises TimedOut where the worker is, except
inside a shield (recording an epoch, telling a trial), where it waits for the shield to end."""

import time

import pytest

from tunekit.study import alarm
from tunekit.study.options import TimedOut


@pytest.fixture(autouse=True)
def no_grace(monkeypatch):
    monkeypatch.setattr(alarm, "ALARM_GRACE_S", 0.0)


def test_the_alarm_stops_what_is_running_after_the_deadline():
    started = time.monotonic()
    with pytest.raises(TimedOut, match="mid-epoch"), alarm.armed(started + 0.1):
        time.sleep(5)
    assert time.monotonic() - started < 2


def test_the_alarm_waits_for_a_shielded_block_and_lands_just_after_it():
    done = []
    started = time.monotonic()
    with pytest.raises(TimedOut), alarm.armed(started + 0.05):
        with alarm.shielded():
            time.sleep(0.4)  # the alarm is due in here
            done.append(time.monotonic() - started)
        time.sleep(5)
    assert done and done[0] >= 0.4  # the shielded block ran to its end
    assert time.monotonic() - started < 2


def test_no_alarm_after_the_block_or_without_a_deadline():
    with alarm.armed(time.monotonic() + 0.05):
        pass
    time.sleep(0.2)  # nothing lands once the block is left
    with alarm.armed(None):
        time.sleep(0.05)


@pytest.mark.parametrize(
    "population, done, target, ramp, size",
    [
        (8, 0, 48, True, 1),  # the first trial alone
        (8, 1, 48, True, 1),
        (8, 2, 48, True, 2),
        (8, 4, 48, True, 4),
        (8, 8, 48, True, 8),
        (8, 30, 48, True, 8),
        (8, 45, 48, True, 3),  # never past the study's total
        (8, 0, 48, False, 8),
        (1, 10, 48, True, 1),
    ],
)
def test_populations_ramp_up_to_their_size(population, done, target, ramp, size):
    from tunekit.study.worker import population_size

    assert population_size(population, done, target, ramp=ramp) == size
