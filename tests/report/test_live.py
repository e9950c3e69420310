"""The live view's frame from the search's events: what it says, and that it fits the width."""

import io

from rich.console import Console

from tunekit.report.live import LiveView


def frame(view: LiveView) -> list[str]:
    view.console.print(view.render())
    return view.console.file.getvalue().splitlines()


def test_running_trials_best_eta_and_failures_by_reason(monkeypatch):
    view = LiveView(Console(width=60, file=io.StringIO()), workers=2, timeout_s=None, started_at=100.0)
    monkeypatch.setattr("time.time", lambda: 130.0)
    view._update({"kind": "study", "name": "tiny", "metric": "val_loss", "done": 0, "target": 10, "best": "-"})
    view._update({"kind": "start", "trial": 0, "epochs": 20, "worker": 1})
    view._update({"kind": "epoch", "trial": 0, "epoch": 3, "value": 0.61234})
    assert frame(view) == [
        "tiny  trials 0/10  best -",
        "elapsed 0:30  ETA –",
        "  w1 trial 0 running  epoch 3/20  val_loss=0.6123",
    ]
    for n, (state, what) in enumerate(
        [
            ("COMPLETE", "val_loss=0.5000"),
            ("FAIL", "reason=diverged"),
            ("FAIL", "reason=oom"),
            ("FAIL", "reason=diverged"),
        ]
    ):
        view._update({"kind": "start", "trial": n, "epochs": 20, "worker": 0})
        view._update(
            {"kind": "end", "trial": n, "state": state, "what": what, "best": "0.5000 (#0)"}
            | {"done": n + 1, "target": 10, "duration": 10.0}
        )
    view._update(
        {"kind": "end", "trial": 4, "state": "PRUNED", "what": "pruned at epoch 2", "best": "0.5000 (#0)"}
        | {"done": 5, "target": 10, "duration": 10.0}
    )
    view.console.file = io.StringIO()
    # 5 trials left at 10 s each on 2 workers: 25 s.
    assert frame(view) == [
        "tiny  trials 5/10  best val_loss=0.5000 (#0)",
        "elapsed 0:30  ETA 0:25",
        "last: trial 4 PRUNED at epoch 2 (10.0s)",
        "pruned: 1  failed: diverged x2, oom x1",
    ]
    view.timeout_s = 40.0  # --timeout ends the search sooner: 10 s left of it
    assert view.eta(130.0) == "0:10"


def test_every_line_is_cut_to_the_width():
    view = LiveView(Console(width=40, file=io.StringIO()))
    view._update(
        {"kind": "study", "name": "a-study-with-a-long-name", "metric": "val_accuracy", "done": 3}
        | {"target": 1000, "best": "0.9861 (#123)"}
    )
    lines = frame(view)
    assert lines[0] == "a-study-with-a-long-name  trials 3/1000…" and all(len(line) <= 40 for line in lines)
