"""A worker's Tally (tunekit.study.liveness) gives the same totals, running trials and best trial as
summing over every trial of the study, while it rereads only the trials not yet finished: trials
that end out of order, queued ones, failures being retried, and another process's trials."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tunekit import reasons
from tunekit.report.summary import pick_best
from tunekit.study.liveness import Tally, counted
from tunekit.study.storage import ask, trials_from

S = optuna.trial.TrialState


def _by_hand(study):
    trials = study.get_trials(deepcopy=False)
    return (
        sum(map(counted, trials)),
        sum(1 for t in trials if counted(t) and t.state.is_finished()),
        [t.number for t in trials if t.state == S.RUNNING],
        getattr(pick_best(study), "number", None),
    )


def _tallied(tally: Tally):
    tally.refresh()
    return tally.done(), tally.finished(), [t.number for t in tally.running()], getattr(tally.best(), "number", None)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_tally_agrees_with_every_trial_summed(tmp_path, direction):
    path = str(tmp_path / "optuna.journal")
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(path)), direction=direction)
    other = optuna.load_study(study_name=study.study_name, storage=JournalStorage(JournalFileBackend(path)))
    tally = Tally(study)
    assert _tallied(tally) == _by_hand(study) == (0, 0, [], None)

    a, b, c = study.ask(), study.ask(), other.ask()  # c: another process's trial
    assert _tallied(tally) == _by_hand(study)
    study.tell(b, 0.5)  # ends before the earlier trial a
    assert _tallied(tally) == _by_hand(study)
    assert tally.settled == 0  # a still runs: nothing after it is summed for good yet
    other.tell(c, 0.5)  # the same value as b: the earlier trial stays the best, as in Optuna
    assert _tallied(tally) == _by_hand(study)
    a.set_user_attr("reason", reasons.WORKER_DIED)  # failed to be retried: it does not count
    study.tell(a, state=S.FAIL)
    study.enqueue_trial({})
    assert _tallied(tally) == _by_hand(study)
    assert tally.settled == 3
    d = study.ask()  # the queued trial
    study.tell(d, 0.9)
    e = study.ask()
    study.tell(e, state=S.PRUNED)
    for value in (0.1, 0.95, 0.95, 0.2):
        study.tell(study.ask(), value)
        assert _tallied(tally) == _by_hand(study)
    assert tally.settled == len(study.trials)
    assert trials_from(study, 0) == study.get_trials(deepcopy=False)
    assert [t.number for t in trials_from(study, 5)] == list(range(5, len(study.trials)))


def test_several_objectives_take_the_best_from_the_front(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    for values in ([0.5, 3.0], [0.7, 9.0], [0.6, 1.0]):
        study.tell(study.ask(), values)
    tally = Tally(study).refresh()
    assert tally.best().number == pick_best(study).number == 1
    assert tally.done() == tally.finished() == 3


def test_asking_without_a_queued_trial_creates_one_and_a_queued_one_is_popped(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    study = optuna.create_study(storage=storage)
    first = ask(study, queued=Tally(study).queued())
    assert first.number == 0 and study.trials[0].state == S.RUNNING
    study.tell(first, 1.0)
    study.enqueue_trial({"x": 0.5})
    tally = Tally(study)
    assert tally.queued()
    popped = ask(study, queued=tally.queued())
    assert popped.number == 1 and popped.suggest_float("x", 0, 1) == 0.5
    assert not Tally(study).queued()
