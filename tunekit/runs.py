"""The runs directory: where a study's files live, and how they are written.

Every file is written atomically (temp file in the same folder, fsync, rename), so a crash or
a full disk leaves the previous version intact instead of half a file. Torch-free.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunekit.errors import DiskFull, StateError, UsageError
from tunekit.registry import did_you_mean


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; a runs folder is shared with colleagues and dashboards, so written
# files get the permissions a plain open() would give them.
FILE_MODE = 0o666 & ~_current_umask()

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
JOURNAL = "optuna.journal"


def _long(name) -> bool:
    return isinstance(name, str) and len(name) > 64


def _cut(name):
    return name[:61] + "..." if _long(name) else name


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"invalid study name {_cut(name)!r}" + (f" ({len(name)} characters)" if _long(name) else ""),
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no '/', no '..')",
        )
    return name


STORAGE_URL = "storage.url"


class StudyDir:
    """Paths of one study's folder, `runs/<study>/` (SPEC §3)."""

    def __init__(self, runs: str | os.PathLike, study: str):
        self.runs = runs_folder(runs)
        self.name = check_study_name(study)
        self.path = self.runs / self.name
        # The name is already confined, but a symlinked study folder could still point elsewhere.
        if self.path.is_symlink():
            raise StateError(f"{self.path} is a symbolic link; tunekit does not write through links", "remove the link")

    def _inside(self, path: Path) -> Path:
        return no_links(path, self.path)

    def sub(self, *parts: str) -> Path:
        """A path inside the study folder (train/, archive/), with no symbolic link on the way."""
        return self._inside(self.path.joinpath(*parts))

    config = property(lambda self: self._inside(self.path / "config.yaml"))
    journal = property(lambda self: self._inside(self.path / JOURNAL))
    best_yaml = property(lambda self: self._inside(self.path / "best.yaml"))
    best_dir = property(lambda self: self._inside(self.path / "best"))

    def trial_dir(self, number: int) -> Path:
        return self._inside(self.path / "trials" / f"{number:05d}")

    # A study created with --storage: its URL, so `list`, `report` and `train --best` find it
    # without the flag (mode 0600: a URL may hold a password).
    storage_url = property(lambda self: self._inside(self.path / STORAGE_URL))

    def exists(self) -> bool:
        return self.journal.exists() or self.storage_url.is_file()

    def marker(self) -> Path:
        """The file that says this folder holds a study: its journal, or the URL of its database."""
        return self.journal if self.journal.exists() else self.storage_url


def _refuse_link(path: Path) -> StateError:
    return StateError(
        f"{path} is a symbolic link; tunekit does not write through links",
        "remove the link (tunekit writes its files itself) and rerun",
    )


def no_links(path: Path, below: Path) -> Path:
    """Refuse `path` when it, or any folder between `below` and it, is a symbolic link.

    Everything under a study folder is tunekit's own; a link planted there (by another user of a
    shared runs/ folder, say) would make a write, truncate, append or move land outside it."""
    path, below = Path(path), Path(below)
    try:
        rel = path.relative_to(below)
    except ValueError:
        return path
    current = below
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise _refuse_link(current)
    return path


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """os.open that never follows a link at `path` and refuses a file hard-linked elsewhere
    (appending or locking through it would touch the other name's content)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse_link(path) from None
        raise
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise StateError(f"{path} has other hard links; tunekit does not write through links", "remove it and rerun")
    return fd


def open_lock(path: Path) -> int:
    """A lock file's descriptor, for flock: created if missing, never truncated, never through a link."""
    return open_nofollow(path, os.O_RDWR | os.O_CREAT)


def write_atomic(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write via `write(fileobj)` to a temp file beside `path`, fsync, then rename over it."""
    if path.is_symlink():
        raise _refuse_link(path)
    if path.is_dir():
        raise StateError(f"{path} is a folder where tunekit writes a file", "move it away and rerun")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise StateError(
            f"cannot write {path}: a file stands where its folder should be", "give another path"
        ) from None
    except OSError as exc:  # no permission, a read-only or virtual file system (/proc)
        if exc.errno == errno.ENOSPC:
            raise DiskFull(f"disk full while writing {path}", "free some space and rerun") from None
        raise StateError(f"cannot write {path}: {exc.strerror}", "give a path you can write to") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        with _suppress():
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DiskFull(
                f"disk full while writing {path}; the previous version is intact", "free some space and rerun"
            ) from None
        raise


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    # numpy scalars and similar: anything with .item() becomes a plain Python number.
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=_plain) + "\n")


def runs_folder(runs: str | os.PathLike) -> Path:
    """--runs: a folder (made when first needed), never a file."""
    path = Path(runs)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--runs {path} is a file, not a folder of studies", "give a folder, e.g. --runs runs")
    return path


def list_studies(runs: str | os.PathLike) -> list[Path]:
    root = runs_folder(runs)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if not p.is_symlink() and ((p / JOURNAL).is_file() or (p / STORAGE_URL).is_file())
    ]
    return sorted(
        found, key=lambda p: ((p / JOURNAL) if (p / JOURNAL).is_file() else (p / STORAGE_URL)).stat().st_mtime
    )


def no_such_study(runs: str | os.PathLike, name: str, hint: str) -> StateError:
    """The error for a study name that is not under `runs` (report, train --best, predict --study, stop):
    a did-you-mean when a study there is spelled close to it, else `hint`."""
    close = did_you_mean(name, [p.name for p in list_studies(runs)])
    return StateError(f"no study '{name}' under {runs}/", close or hint)


def chosen_study(runs: str | os.PathLike, study: str | None) -> StudyDir:
    """The study a command names, or the most recent one when it names none. An empty name is a
    name (an invalid one), not a request for the latest study."""
    return StudyDir(runs, most_recent_study(runs) if study is None else study)


def most_recent_study(runs: str | os.PathLike) -> str:
    studies = list_studies(runs)
    if not studies:
        raise StateError(f"no study found under {runs}/", "run `tunekit search CONFIG` first, or pass --runs")
    return studies[-1].name
