"""`search` on a terminal, as a user sees it: a pty of 80 (or 60) columns, the bytes tunekit writes
fed to a terminal emulator (pyte), and the screen asserted. Off a terminal the line log stays."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.conftest import TINY
from tunekit.report import live

pyte = pytest.importorskip("pyte")

TUNEKIT = [sys.executable, "-m", "tunekit"]

CONFIG = TINY.replace("epochs: 3,", "epochs: EPOCHS,")  # the epoch count each test needs


def on_terminal(tmp_path, columns: int, *args, epochs: int = 2, env=None, stdout_piped=False, ctrl_c_when=None):
    """Run `tunekit search` with stderr (and stdout, unless piped) on a pty of `columns` x 24.
    Returns (exit code, every byte the terminal got, what went to the stdout pipe)."""
    (tmp_path / "c.yaml").write_text(CONFIG.replace("EPOCHS", str(epochs)))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environ.update({"COLUMNS": str(columns), "LINES": "24", "TERM": "xterm-256color", **(env or {})})
    proc = subprocess.Popen(
        [*TUNEKIT, "search", "c.yaml", *args],
        cwd=tmp_path,
        stdin=slave,
        stdout=subprocess.PIPE if stdout_piped else slave,
        stderr=slave,
        env=environ,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    os.close(slave)
    seen, interrupted, deadline = b"", False, time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed the pty
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
            if ctrl_c_when and not interrupted and ctrl_c_when(seen):
                os.killpg(proc.pid, signal.SIGINT)  # what the terminal's Ctrl-C does
                interrupted = True
        piped = proc.stdout.read().decode() if stdout_piped else ""
        return proc.wait(timeout=60), seen, piped
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def screen(data: bytes, columns: int) -> list[str]:
    """The terminal's lines once `data` is drawn, trailing blanks dropped (a tall screen keeps the scrollback)."""
    term = pyte.Screen(columns, 200)
    pyte.ByteStream(term).feed(data)
    lines = [line.rstrip() for line in term.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def frames(data: bytes, columns: int):
    """The screen after each write rich made (each redraw of the view ends by showing it)."""
    term = pyte.Screen(columns, 200)
    stream = pyte.ByteStream(term)
    for i, piece in enumerate(data.split(b"\r\x1b[2K")):
        stream.feed((b"\r\x1b[2K" if i else b"") + piece)
        yield [line.rstrip() for line in term.display if line.strip()]


def test_the_live_view_at_80_columns_redraws_in_place_and_leaves_the_summary(tmp_path):
    code, seen, _ = on_terminal(tmp_path, 80)
    assert code == 0, seen.decode(errors="replace")[-2000:]
    final = screen(seen, 80)
    text = "\n".join(final)
    # The last frame stays: all trials, the best with its trial, elapsed and ETA, the last trial.
    view = next(i for i, line in enumerate(final) if line.startswith("tiny  trials "))
    assert final[view].startswith("tiny  trials 3/3  best val_accuracy=") and "(#" in final[view]
    assert final[view + 1].startswith("elapsed 0:") and "ETA 0:00" in final[view + 1]
    assert final[view + 2].startswith("last: trial 2 COMPLETE val_accuracy=")
    # Redrawn in place: one view on the screen, no stale frame, no per-trial log line.
    assert sum("trials " in line and "/3  best" in line for line in final) == 1
    assert "[1/3] trial 0" not in text
    # Then the summary and the next step, as off a terminal.
    assert "top 3 trials" in text and final[-1] == "next: tunekit train --best --study tiny"
    # Mid-run the view showed a running trial's epoch, and said ETA – before any trial ended.
    mid = [f for f in frames(seen, 80) if any("trial 0 running  epoch" in line for line in f)]
    assert mid and any(line.startswith("tiny  trials 0/3  best -") for line in mid[0])
    assert any(line.startswith("elapsed ") and line.endswith("ETA –") for line in mid[0])
    # Nothing relied on the terminal wrapping: drawn on a 200-column screen, no line passes 80.
    assert max(len(line) for line in screen(seen, 200)) <= 80
    assert seen.rfind(b"\x1b[?25h") > seen.rfind(b"\x1b[?25l")  # the cursor is shown again


def test_a_first_ctrl_c_on_a_60_column_terminal_leaves_the_view_then_the_resume_line(tmp_path):
    code, seen, _ = on_terminal(
        tmp_path, 60, "--trials", "3", epochs=40, ctrl_c_when=lambda seen: b"trial 0 running" in seen
    )
    assert code == 130
    final = screen(seen, 60)
    text = "\n".join(final)
    assert "stopping: the running trial(s) finish, no new ones start" in text, text
    view = next(i for i, line in enumerate(final) if line.startswith("tiny  trials "))
    # The trial running at the Ctrl-C finished (on a loaded machine the next one may have started).
    done = next(line for line in final if line.startswith("stopped as asked at ")).split()[4]
    assert done in ("1", "2") and final[view].startswith(f"tiny  trials {done}/3  best val_accuracy=")
    # Below the view, the lines of today's Ctrl-C; the resume command is left for the terminal to wrap.
    assert final[view + 3 :] == [
        "interrupted (SIGINT); the study is saved",
        "resume with: tunekit search c.yaml --study tiny --runs runs",
        "--trials 3",
    ]
    wide = screen(seen, 200)
    assert max(len(line) for line in wide[: wide.index("interrupted (SIGINT); the study is saved")]) <= 60
    assert seen.rfind(b"\x1b[?25h") > seen.rfind(b"\x1b[?25l")


def test_with_stdout_piped_the_terminal_gets_the_line_log(tmp_path):
    code, seen, piped = on_terminal(tmp_path, 80, stdout_piped=True)
    assert code == 0
    final = screen(seen, 80)
    assert final[0].startswith("study 'tiny' in runs/tiny/optuna.journal: 0/3 trials done")
    logged = [line[:22] for line in final if line.startswith("[")]  # today's lines, wrapped by the terminal
    assert logged == ["[1/3] trial 0    COMPL", "[2/3] trial 1    COMPL", "[3/3] trial 2    COMPL"]
    assert b"\x1b[?25l" not in seen  # no live view drew
    assert "top 3 trials" in piped


@pytest.mark.parametrize(
    "environ, quiet, json_, ttys, expected",
    [
        ({"TERM": "xterm-256color"}, False, False, (True, True), True),
        ({"TERM": "xterm-256color", "NO_COLOR": "1"}, False, False, (True, True), False),
        ({"TERM": "dumb"}, False, False, (True, True), False),
        ({"TERM": "xterm-256color"}, True, False, (True, True), False),
        ({"TERM": "xterm-256color"}, False, True, (True, True), False),
        ({"TERM": "xterm-256color"}, False, False, (False, True), False),
        ({"TERM": "xterm-256color"}, False, False, (True, False), False),
    ],
)
def test_the_live_view_only_where_it_is_wanted(environ, quiet, json_, ttys, expected):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert live.wanted(quiet, json_, environ, [Stream(t) for t in ttys]) is expected


def test_quiet_prints_nothing_but_errors(cli, write_config, runs):
    quiet = cli("search", write_config(), "--runs", runs, "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    failed = cli("search", write_config(), "--runs", runs, "-q", "--set", "train.epochs=0")
    assert failed.exit_code != 0 and failed.stderr.startswith("error: ")
