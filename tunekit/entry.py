"""The `tunekit` command's first code: SIGINT and SIGTERM are answered from its first moment, not
only once the CLI and torch are imported (a second or more, in which Python would otherwise print a
KeyboardInterrupt traceback, or die silently by SIGTERM)."""

from __future__ import annotations

from tunekit.signals import leave_at_once_until_a_command_runs


def main() -> None:
    leave_at_once_until_a_command_runs()  # each command's body takes them over (cli._guarded)
    from tunekit.cli import main as run  # typer and rich: imported after, so a signal in them is answered

    run()
