"""TensorBoard: one run folder per trial (`trial-00042/`, `best/`, `train/`) with a scalar per metric per
epoch and the HParams plugin's record of the trial's params, state, reason and objective values.

Folders: `--track tensorboard` writes under runs/<study>/tensorboard/; `--track tensorboard:DIR` under
DIR/<study>/, so several studies can share one `tensorboard --logdir DIR`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from tunekit.track.tracking import shown_params


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, target: str | None, default_dir: Path | None = None):
        self.target, self.default_dir = target, default_dir
        self.base: Path | None = None
        self.writers: dict[str, SummaryWriter] = {}

    def study_started(self, study: str, objectives: list[tuple[str, str]], nested: bool, owner: bool) -> None:
        base = Path(self.target) / study if self.target is not None else self.default_dir
        if base is None:
            raise ValueError("no folder to write to")
        base.mkdir(parents=True, exist_ok=True)  # a file in the way fails here, before any trial
        self.base = base

    def trial_started(self, key: str, number: int | None, params: dict[str, Any]) -> None:
        folder = self.base / key
        if folder.is_dir():  # a rerun of this key (train --best again, a --fresh study in a shared DIR)
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
        hp = folder / "hparams"
        if hp.is_dir():
            shutil.rmtree(hp)
        self.writers[key] = SummaryWriter(log_dir=str(folder))

    def epoch(self, key: str, epoch: int, metrics: dict[str, float]) -> None:
        writer = self.writers[key]
        for name, value in metrics.items():
            writer.add_scalar(name, value, epoch)

    def trial_ended(
        self, key: str, state: str, reason: str | None, values: dict[str, float], params: dict[str, Any]
    ) -> None:
        writer = self.writers.pop(key, None)
        if writer is None:
            return
        shown = {**shown_params(params), "state": state, "reason": reason or ""}
        metrics = dict(values)
        for summary in hparams(shown, metrics):
            writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)
        writer.close()

    def best_model(self, key: str, path: Path, number: int | None) -> None:
        writer = self.writers.get(key)
        if writer is not None:
            writer.add_text("model", f"{path}" + (f" (trial #{number})" if number is not None else ""))

    def study_ended(self, best_number: int | None, best_values: dict[str, float], n_trials: int) -> None:
        pass

    def close(self, interrupted: bool) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
