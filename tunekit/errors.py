"""Every error a user can cause, each carrying the exit code SPEC §5 gives it.

The CLI prints these as one line each (no traceback) and exits with `exit_code`.
Anything else that escapes is an internal error (exit 1).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


class TunekitError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        text = self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return [text]


class UsageError(TunekitError):
    exit_code = 2


@dataclass
class Problem:
    """One thing wrong with a config: where (dotted key, file line) and what."""

    path: str
    message: str
    line: int | None = None
    hint: str | None = None
    origin: str | None = None  # where the value came from when not the file: "--set optimizer.lr=fast"

    def render(self, source: str | None) -> str:
        where = self.origin or source or "<config>"
        if self.line is not None and self.origin is None:
            where += f":{self.line}"
        key = f" {self.path}:" if self.path else ""
        text = f"{where}:{key} {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(TunekitError):
    """An invalid config: carries every problem found, so the user fixes them all in one go."""

    exit_code = 3

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = problems
        self.source = source
        # Where validation left one: a config the later checks can still run on, and the paths of
        # the faulty keys it stands in for (their defaults in their place).
        self.stand_in = None
        self.stand_in_for: list[str] = []
        super().__init__("; ".join(p.render(source) for p in problems))

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]


class DataError(TunekitError):
    """Invalid data or environment: missing file, bad labels, device not available."""

    exit_code = 4


class StateError(TunekitError):
    """Study or storage problem: corrupt/locked study, changed search space, nothing to train."""

    exit_code = 5


class DiskFull(StateError):
    """No space left while writing a file; the previous version of that file is intact."""


def os_error(exc: OSError) -> TunekitError | None:
    """An OSError a user's machine causes, as the one-line error they get: a full disk (exit 5), a
    folder tunekit may not write (exit 4). None for anything else (an internal error)."""
    if exc.errno == errno.ENOSPC:
        return disk_full(exc)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        where = f" {exc.filename}" if exc.filename else ""
        return DataError(
            f"cannot write{where}: {exc.strerror}", "choose a writable --runs folder, or fix its permissions"
        )
    return None


def disk_full(exc: OSError) -> DiskFull:
    """A raw ENOSPC (a journal append, a library's own write) as the one-line error a user gets."""
    where = f" writing {exc.filename}" if exc.filename else ""
    return DiskFull(
        f"disk full{where}; files written so far are intact",
        "free space, then rerun the same command; `tunekit search ... --repair` mends a torn journal",
    )


class AllTrialsFailed(TunekitError):
    exit_code = 6


class TrainStopped(TunekitError):
    """`train` ran, but a diagnostic (reasons.DIAGNOSTIC) stopped it or one of its seeds: an outcome,
    reported in full before this is raised, with its own exit code so scripts can tell."""

    exit_code = 6
