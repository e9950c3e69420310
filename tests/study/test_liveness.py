"""Who runs which trial: the heartbeat a worker keeps on its running trials, read back from a real journal."""

import time

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tunekit.study.liveness import Heartbeat, is_dead, worker_id


def test_one_heartbeat_thread_beats_exactly_the_trials_being_run(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal")))
    study = optuna.create_study(storage=storage)
    first, second = study.ask(), study.ask()

    def beat_of(trial):
        return storage.get_trial(trial._trial_id).user_attrs.get("heartbeat")

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
