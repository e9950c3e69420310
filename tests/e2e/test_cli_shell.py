"""The CLI as a shell citizen: help with examples, plain text off a terminal, verbosity."""

import json
import re

import pytest

from tunekit.cli import app

COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_ends_with_an_example(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert re.search(r"Example: tunekit " + re.escape(command.split()[0]), result.stdout), result.stdout


def test_no_colour_codes_off_a_terminal(cli, write_config, runs, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli("search", write_config(), "--runs", runs).exit_code == 0
    out = cli("report", "--runs", runs)
    assert out.exit_code == 0 and "\x1b[" not in out.stdout and "\x1b[" not in out.stderr


def test_quiet_and_verbose(cli, write_config, runs):
    quiet = cli("search", write_config(), "--runs", runs, "-q", "--json")
    assert quiet.exit_code == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["n_trials"] == 3
    verbose = cli("search", write_config(), "--runs", runs, "--trials", "4", "-v")
    assert "trial 3 epoch   3  train_loss=" in verbose.stderr
