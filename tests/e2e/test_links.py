"""Links planted inside a study folder never carry a write, truncate, append or move outside it,
and nothing from a file they point at is echoed back. Each probe plants one link to a victim file
(or folder) outside runs/, runs the command that would write there, and checks the victim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

TUNEKIT = [sys.executable, "-m", "tunekit"]
SECRET = "root:x:0:0:SECRET-LINE:/root:/bin/bash\n"


def tunekit(cwd: Path, *args):
    env = {k: v for k, v in os.environ.items() if k != "TUNEKIT_FAULT"}
    return subprocess.run([*TUNEKIT, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """A finished 2-trial study with a trained best/, copied per test."""
    root = tmp_path_factory.mktemp("study")
    (root / "c.yaml").write_text(TINY.replace("trials: 3", "trials: 2"))
    assert tunekit(root, "search", "c.yaml", "--runs", "runs").returncode == 0
    assert tunekit(root, "train", "--best", "--runs", "runs").returncode == 0
    return root


@pytest.fixture
def study(searched, tmp_path) -> Path:
    subprocess.run(["cp", "-a", f"{searched}/.", str(tmp_path)], check=True)
    return tmp_path


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_text(SECRET)
    return victim


# (id, the link inside runs/tiny, the command that writes there)
PROBES = [
    ("ask-lock", ".ask.lock", ["search", "c.yaml", "--runs", "runs", "--trials", "3"]),
    ("journal-flock", "optuna.journal.flock", ["search", "c.yaml", "--runs", "runs", "--trials", "3"]),
    ("trial-metrics", "trials/2/metrics.jsonl", ["search", "c.yaml", "--runs", "runs", "--trials", "3"]),
    ("best-lock", "best/.lock", ["train", "--best", "--runs", "runs"]),
    ("best-model", "best/model.pt", ["train", "--best", "--runs", "runs"]),
    ("best-yaml", "best.yaml", ["search", "c.yaml", "--runs", "runs", "--trials", "3"]),
]


@pytest.mark.parametrize("where, args", [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_a_planted_file_link_is_never_written_through(study, where, args):
    victim = _victim(study)
    link = study / "runs" / "tiny" / where
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(victim)
    before = victim.stat()
    result = tunekit(study, *args)
    assert victim.read_text() == SECRET and victim.stat().st_mtime_ns == before.st_mtime_ns
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "SECRET-LINE" not in result.stdout + result.stderr
    if result.returncode != 0:  # refused in one line naming the link
        assert result.returncode == 5 and "symbolic link" in result.stderr, result.stderr
    assert (study / "runs" / "tiny").is_dir()


@pytest.mark.parametrize(
    "where, args",
    [
        ("archive", ["search", "c.yaml", "--runs", "runs", "--fresh", "--trials", "1"]),
        ("train", ["train", "c.yaml", "--runs", "runs"]),
        ("best/seeds", ["train", "--best", "--runs", "runs", "--seeds", "2"]),
    ],
    ids=["archive", "train", "best-seeds"],
)
def test_a_planted_folder_link_is_never_written_or_moved_through(study, where, args):
    outside = study / "outside-dir"
    outside.mkdir()
    link = study / "runs" / "tiny" / where
    if link.exists():
        subprocess.run(["rm", "-rf", str(link)], check=True)
    link.symlink_to(outside)
    result = tunekit(study, *args)
    assert list(outside.iterdir()) == [], result.stderr  # nothing moved or written out there
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.returncode == 5 and "symbolic link" in result.stderr, result.stderr
    assert (study / "runs" / "tiny" / "optuna.journal").is_file()  # --fresh did not move the study out


def test_a_planted_best_yaml_naming_any_file_as_data_is_neither_trusted_nor_echoed(study):
    victim = _victim(study)
    (study / "runs" / "tiny" / "best.yaml").write_text(f"name: tiny\ndata: {{name: csv, path: {victim}}}\n")
    result = tunekit(study, "train", "--best", "--runs", "runs", "--json")
    assert result.returncode == 0, result.stderr  # the best trial comes from the study storage
    assert "SECRET-LINE" not in result.stdout + result.stderr
    assert "data: {name: iris}" in (study / "runs" / "tiny" / "best.yaml").read_text()  # rewritten from the study
