"""What a search does around its trials, without torch: open its trackers, and once the trials are
done write best.yaml, summarize the study, close the trackers and refuse a study where every trial
failed. Shared by one process (tunekit.study.search) and the `--workers` parent
(tunekit.study.workers), which never imports torch."""

from __future__ import annotations

import sys
from typing import Any

from tunekit import reasons
from tunekit.errors import AllTrialsFailed
from tunekit.report.summary import summarize
from tunekit.runs import StudyDir
from tunekit.study.best import write_best
from tunekit.study.storage import describe_storage, load_study
from tunekit.track.tracking import Tracking


def open_tracking(specs, study_dir: StudyDir, objectives: list[tuple[str, str]], label: str, owner: bool) -> Tracking:
    """This process's trackers, started on the study. A tracker that fails is reported on stderr (even
    with -q: it is a warning) and left out."""

    def warn(line: str) -> None:
        print(label + line, file=sys.stderr, flush=True)

    tracking = Tracking.open(specs, {"tensorboard": study_dir.sub("tensorboard")}, warn)
    tracking.study_started(study_dir.name, objectives, nested=True, owner=owner)
    return tracking


def end_search(
    study_dir: StudyDir, storage: str | None, objectives: list[tuple[str, str]], tracking: Tracking | None
) -> dict[str, Any]:
    """The trials are done: best.yaml, the SPEC §6 summary, the trackers told and closed. Raises
    AllTrialsFailed when no trial completed or was pruned and some failed for their config."""
    study = load_study(study_dir, storage)
    write_best(study, study_dir)
    summary = summarize(study, describe_storage(study_dir, storage))
    if tracking:
        best = summary.get("best") or {}
        value = best.get("value")
        values = dict(zip([m for m, _ in objectives], value if isinstance(value, list) else [value]))
        tracking.study_ended(
            best.get("number"), {k: v for k, v in values.items() if v is not None}, summary["n_trials"]
        )
        tracking.close()
    states = summary["states"]
    real_failures = {r: n for r, n in summary["reasons"].items() if r not in reasons.NOT_THE_CONFIG}
    if states["COMPLETE"] == 0 and states["PRUNED"] == 0 and real_failures:
        top = ", ".join(f"{r} x{n}" for r, n in real_failures.items())
        raise AllTrialsFailed(
            f"every trial failed ({top})",
            "see runs/<study>/trials/*/ and `tunekit report`; lower the learning rate or fix the config",
        )
    return summary
