"""tunekit in a shell pipeline: a reader that leaves early (`| head -1`) is not an error.

Every command runs as a real process behind a real pipe, with bash's pipefail so the exit code is
tunekit's. Two readers: `head -1`, which leaves after the first line, and `true`, which leaves
before tunekit has written anything, so that the closed pipe is certain to be hit and not raced.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY

TUNEKIT = [sys.executable, "-m", "tunekit"]
# What tunekit may say on stderr while it works; anything else after a closed pipe is a complaint.
PROGRESS = ("study '", "[", "next: ", "training ", "nothing to run: ")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One tiny finished study, shared by the module: (config, runs)."""
    root = tmp_path_factory.mktemp("pipes")
    config = root / "tiny.yaml"
    config.write_text(TINY.replace("epochs: 3", "epochs: 1"))
    runs = root / "runs"
    subprocess.run([*TUNEKIT, "search", str(config), "--runs", str(runs), "-q"], check=True, capture_output=True)
    return config, runs


def _piped(args: list[str], reader: str) -> subprocess.CompletedProcess:
    cmd = f"{shlex.join(args)} | {reader}"
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=REPO, timeout=300)


def _complaints(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(PROGRESS)]


COMMANDS = {
    "report": ["report", "tiny", "--runs", "{runs}"],
    "report-json": ["report", "tiny", "--runs", "{runs}", "--json"],
    "report-format-json": ["report", "tiny", "--runs", "{runs}", "--format", "json"],
    "report-csv": ["report", "tiny", "--runs", "{runs}", "--format", "csv"],
    "report-markdown": ["report", "tiny", "--runs", "{runs}", "--format", "markdown"],
    "validate": ["validate", "{config}"],
    "validate-json": ["validate", "{config}", "--json"],
    "list": ["list", "--runs", "{runs}"],
    "list-json": ["list", "--runs", "{runs}", "--json"],
    "schema": ["schema"],
    "search": ["search", "{config}", "--runs", "{runs}"],  # the table on stdout (-q prints nothing)
    "search-json": ["search", "{config}", "--runs", "{runs}", "-q", "--json"],
    "train": ["train", "{config}", "--runs", "{runs}"],
    "lr-find": ["lr-find", "{config}", "--runs", "{runs}", "--steps", "10"],
    "init": ["init"],
    "help": ["--help"],
    "command-help": ["report", "--help"],
    "version": ["--version"],
}


# `true` for every command (the closed pipe is certain); `head -1`, which may race, for a few.
CASES = [(name, "true") for name in sorted(COMMANDS)] + [
    (name, "head -1") for name in ("report", "report-csv", "validate", "list", "search", "help")
]


@pytest.mark.parametrize("name, reader", CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_a_closed_pipe_exits_0_in_silence(study, name, reader):
    config, runs = study
    args = [*TUNEKIT, *(a.format(config=config, runs=runs) for a in COMMANDS[name])]
    result = _piped(args, reader)
    assert result.returncode == 0, result.stderr
    assert _complaints(result.stderr) == [], result.stderr
    if reader == "head -1":
        assert result.stdout.count("\n") == 1 and result.stdout.strip(), result.stdout


def test_version_prints_the_version_fast():
    from tunekit import __version__

    result = subprocess.run([*TUNEKIT, "--version"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and result.stdout == f"tunekit {__version__}\n" and result.stderr == ""
    code = (
        "import sys; sys.argv=['tunekit','--version']\nfrom tunekit.cli import main\ntry: main()\n"
        "except SystemExit as e: print('CODE', e.code)\n"
        "print('HEAVY', [m for m in ('torch', 'optuna') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "HEAVY []" in out and "CODE 0" in out, out


def test_the_first_line_through_head_is_the_real_one(study):
    config, runs = study
    report = _piped([*TUNEKIT, "report", "tiny", "--runs", str(runs), "--format", "csv"], "head -1")
    assert report.stdout == "number,state,value,reason,duration_s,optimizer.lr\n"
    version = _piped([*TUNEKIT, "--version"], "head -c 7")
    assert version.returncode == 0 and version.stdout == "tunekit"


def test_a_broken_pipe_that_is_not_stdout_stays_an_internal_error():
    # An EPIPE from, say, a pipe to a worker is a real failure, not a reader leaving early.
    code = (
        "from tunekit.cli import _guarded\n"
        "@_guarded\ndef command():\n    raise BrokenPipeError(32, 'Broken pipe to a worker')\n"
        "try:\n    command()\nexcept BaseException as exc:\n    print('CODE', getattr(exc, 'exit_code', exc))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "CODE 1" in result.stdout and "internal error: BrokenPipeError" in result.stderr
