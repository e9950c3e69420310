"""Who runs which trial: the heartbeat a worker keeps on its running trials, read back from a real journal."""

import time

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tunekit.study.liveness import Heartbeat, claim, counted, is_dead, recover_dead_trials, worker_id


def test_one_heartbeat_thread_beats_exactly_the_trials_being_run(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal")))
    study = optuna.create_study(storage=storage)
    first, second = study.ask(), study.ask()

    def beat_of(trial):
        return storage.get_trial(trial._trial_id).user_attrs.get("heartbeat")

    claim(storage, [first._trial_id, second._trial_id])
    with Heartbeat(storage, interval=0.05) as beats:
        with beats.running([first._trial_id, second._trial_id]):
            assert storage.get_trial(first._trial_id).user_attrs["worker"] == worker_id()
            time.sleep(0.3)
            assert beat_of(first) is not None and time.time() - beat_of(second) < 1
        study.tell(first, 1.0)  # told after its block: a late beat must not disturb it
        last = beat_of(second)
        time.sleep(0.3)
        assert beat_of(second) == last  # no longer this worker's: no more beats
    assert storage.get_trial(first._trial_id).state.name == "COMPLETE"
    assert not beats._thread.is_alive()
    # A trial whose beats stopped goes stale; the one still beating would not.
    assert is_dead(storage.get_trial(second._trial_id), now=time.time() + 121)
    assert not is_dead(storage.get_trial(second._trial_id), now=last + 60)


def test_an_unclaimed_trial_is_dead_only_to_a_holder_of_the_ask_lock(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal")))
    study = optuna.create_study(storage=storage)
    orphan = storage.get_trial(study.ask()._trial_id)  # its asker was killed before claiming it
    assert not is_dead(orphan)  # on a database there is no shared lock: a fresh one gets the grace
    assert is_dead(orphan, unclaimed_is_dead=True)


def _died(study, storage, trial) -> None:
    storage.set_trial_user_attr(trial._trial_id, "worker", "gone-host:1")
    storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time() - 1000)


def test_a_trial_that_keeps_killing_its_worker_is_retried_max_retries_times_then_fails(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal")))
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 0.5})
    runs = 0
    while True:
        trial = study.ask()
        if trial.number > 10:
            break
        trial.suggest_float("x", 0, 1)
        _died(study, storage, trial)  # an OOM kill, every time
        runs += 1
        if not recover_dead_trials(study, lambda line: None, max_retries=2) or not study.get_trials(
            states=(optuna.trial.TrialState.WAITING,)
        ):
            break
    trials = study.get_trials()
    assert runs == 3  # the first run and 2 retries
    assert [t.user_attrs.get("retries", 0) for t in trials] == [0, 1, 2]
    assert all(t.state.name == "FAIL" and t.user_attrs["reason"] == "worker_died" for t in trials)
    assert trials[-1].user_attrs["retries_exhausted"] and not trials[0].user_attrs.get("retries_exhausted")

    assert [counted(t) for t in trials] == [False, False, True]  # the last failure takes its slot
