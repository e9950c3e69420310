"""Which trackers a run writes to: `--track mlflow[:URI]` / `--track tensorboard[:DIR]` and the config's
`tracking:` section, merged into specs. No tracker package is imported here (they load only when used)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from tunekit.errors import UsageError
from tunekit.registry import did_you_mean

TRACKERS = ("mlflow", "tensorboard")
EXTRA = {"mlflow": "mlflow", "tensorboard": "tensorboard"}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # sqlite:///…, http://…, file:…, databricks: (not C:\…)


@dataclass(frozen=True)
class TrackSpec:
    """One tracker and where it writes. `target` None: the tracker's default (MLflow's own tracking URI,
    MLFLOW_TRACKING_URI or sqlite:///mlflow.db; TensorBoard: runs/<study>/tensorboard)."""

    name: str
    target: str | None = None

    def __str__(self) -> str:
        return self.name if self.target is None else f"{self.name}:{self.target}"


def resolve_target(name: str, target: str | None, base_dir: str) -> str | None:
    """A relative folder or file made absolute against `base_dir`; an MLflow URI is left as MLflow reads it."""
    if target is None or (name == "mlflow" and _URI.match(target)):
        return target
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(target)))


def parse_track(texts: list[str] | None, base_dir: str | None = None) -> list[TrackSpec]:
    """`--track` values -> specs (relative paths against the working directory, like any path typed in a shell)."""
    base_dir = base_dir or os.getcwd()
    specs = []
    for text in texts or []:
        name, colon, target = text.partition(":")
        name = name.strip().lower()
        if name not in TRACKERS:
            hint = did_you_mean(name, list(TRACKERS)) or "e.g. --track mlflow:./mlruns or --track tensorboard"
            raise UsageError(f"--track {text!r}: unknown tracker {name!r} (trackers: {', '.join(TRACKERS)})", hint)
        if colon and not target.strip():
            raise UsageError(f"--track {text!r}: nothing after the ':'", f"e.g. --track {name} or --track {name}:DIR")
        specs.append(TrackSpec(name, resolve_target(name, target.strip() if colon else None, base_dir)))
    return specs


def from_section(section) -> list[TrackSpec]:
    """The config's `tracking:` section (paths already absolute, see tunekit.config.load) -> specs."""
    specs = []
    for name in TRACKERS:
        value = getattr(section, name, None) if section is not None else None
        if value is True:
            specs.append(TrackSpec(name))
        elif isinstance(value, str):
            specs.append(TrackSpec(name, value))
    return specs


def merged(section_specs: list[TrackSpec], flag_specs: list[TrackSpec]) -> list[TrackSpec]:
    """The config's trackers, each replaced by a --track of the same tracker; one spec per tracker and target."""
    flagged = {s.name for s in flag_specs}
    out: list[TrackSpec] = []
    for spec in [*(s for s in section_specs if s.name not in flagged), *flag_specs]:
        if spec not in out:
            out.append(spec)
    return out
