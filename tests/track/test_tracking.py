"""The tracking layer without a tracker package: which trackers a run asks for, the config's
`tracking:` section, and the rule that a tracker's failure is reported once and never fails a trial."""

from __future__ import annotations

import pytest

from tunekit.config.load import load_config
from tunekit.errors import ConfigError, DataError, UsageError
from tunekit.track import tracking as tracking_mod
from tunekit.track.specs import TrackSpec, from_section, merged, parse_track
from tunekit.track.tracking import Tracking, check_installed, flat_config, numbers


def test_track_flags_resolve_paths_from_the_working_directory_and_keep_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    specs = parse_track(["mlflow:./mlruns", "tensorboard", "mlflow:sqlite:///x.db", "TensorBoard:tb"])
    assert specs == [
        TrackSpec("mlflow", str(tmp_path / "mlruns")),
        TrackSpec("tensorboard", None),
        TrackSpec("mlflow", "sqlite:///x.db"),
        TrackSpec("tensorboard", str(tmp_path / "tb")),
    ]


def test_an_unknown_tracker_is_a_usage_error_with_a_hint():
    with pytest.raises(UsageError) as err:
        parse_track(["mlfow:./x"])
    assert err.value.lines() == [
        "--track 'mlfow:./x': unknown tracker 'mlfow' (trackers: mlflow, tensorboard) (hint: did you mean 'mlflow'?)"
    ]
    with pytest.raises(UsageError, match=r"--track 'tensorboard:': nothing after the ':'"):
        parse_track(["tensorboard:"])


def test_a_flag_replaces_the_config_entry_of_the_same_tracker():
    section = [TrackSpec("mlflow", "/a"), TrackSpec("tensorboard", None)]
    assert merged(section, [TrackSpec("mlflow", "/b")]) == [TrackSpec("tensorboard", None), TrackSpec("mlflow", "/b")]
    assert merged(section, []) == section


def test_the_tracking_section_is_checked_and_its_paths_are_read_from_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    path = folder / "c.yaml"
    path.write_text("data: {name: iris}\ntracking: {tensorboard: tb, mlflow: sqlite:///m.db}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(str(path))
    assert from_section(config.tracking) == [
        TrackSpec("mlflow", "sqlite:///m.db"),
        TrackSpec("tensorboard", str(folder / "tb")),
    ]
    assert config.raw["tracking"]["tensorboard"] == str(folder / "tb")  # trial configs track to the same place
    # --set is typed in a shell: its path is read from the working directory
    config = load_config(str(path), ["tracking.tensorboard=tb2"])
    assert config.tracking.tensorboard == str(tmp_path / "tb2")

    path.write_text("data: {name: iris}\ntracking: {mlfow: true, tensorboard: ''}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    lines = err.value.lines()
    assert any("tracking.mlfow: unknown key in tracking (hint: did you mean 'mlflow'?)" in line for line in lines)
    assert any("tracking.tensorboard:" in line and "give a folder or URI" in line for line in lines)


def test_a_missing_extra_is_refused_with_the_pip_hint(monkeypatch):
    monkeypatch.setitem(tracking_mod.IMPLEMENTATIONS, "mlflow", ("x", "X", "tunekit_no_such_package"))
    with pytest.raises(DataError) as err:
        check_installed([TrackSpec("mlflow")])
    assert err.value.exit_code == 4
    assert err.value.lines() == [
        "--track mlflow needs the 'tunekit_no_such_package' package, which is not installed "
        "(hint: pip install 'tunekit[mlflow]')"
    ]


class Recorder:
    def __init__(self, name, fail_on=None):
        self.name, self.fail_on, self.calls, self.closed = name, fail_on, [], None

    def __getattr__(self, method):
        def call(*args):
            if method == self.fail_on:
                raise OSError(28, "No space left on device")
            self.calls.append((method, args))

        return call

    def close(self, interrupted):
        self.closed = interrupted


def test_a_failing_tracker_is_reported_once_and_switched_off_while_the_others_go_on():
    warnings = []
    bad, good = Recorder("mlflow", fail_on="epoch"), Recorder("tensorboard")
    tracking = Tracking([bad, good], warnings.append)
    tracking.study_started("s", [("val_accuracy", "maximize")])
    tracking.trial_started("trial-00000", 0, {"optimizer.lr": 0.1})
    assert [c[0] for c in good.calls] == ["study_started"]  # the run opens at its first epoch, outside the ask lock
    for epoch in (1, 2, 3):
        tracking.epoch("trial-00000", epoch, {"val_accuracy": 0.5, "lr": float("nan")})
    tracking.trial_ended("trial-00000", "COMPLETE", None, {"objective.val_accuracy": 0.5}, {})
    assert warnings == [
        "warning: tracking to mlflow failed and is off for the rest of this run "
        "(OSError: [Errno 28] No space left on device); the study goes on"
    ]
    assert tracking.trackers == [good] and bad.closed is True
    assert [c[0] for c in good.calls] == ["study_started", "trial_started", "epoch", "epoch", "epoch", "trial_ended"]
    assert good.calls[2][1] == ("trial-00000", 1, {"val_accuracy": 0.5})  # NaN is left out, not logged


def test_a_tracker_that_cannot_start_is_left_out(monkeypatch):
    monkeypatch.setitem(tracking_mod.IMPLEMENTATIONS, "tensorboard", ("os", "no_such_attribute", "os"))
    warnings = []
    tracking = Tracking.open([TrackSpec("tensorboard")], {}, warnings.append)
    assert not tracking and len(warnings) == 1 and "tracking to tensorboard failed" in warnings[0]


def test_params_and_numbers_as_trackers_take_them():
    assert flat_config({"optimizer": {"name": "adam", "lr": 0.01}, "search": {"x": 1}, "tracking": {}, "seed": 0}) == {
        "optimizer.name": "adam",
        "optimizer.lr": 0.01,
        "seed": 0,
    }
    assert numbers({"a": 1, "b": True, "c": "x", "d": float("inf"), "e": 0.5}) == {"a": 1.0, "e": 0.5}
