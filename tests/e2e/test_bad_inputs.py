"""The bad-input catalogue (shared/NOTES.md), one row each, through the real CLI: the exit code of
SPEC §5, a one-line message naming the file:line or key, no traceback, nothing half-written."""

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import TINY

BASE = "name: bad\ndata: {name: iris}\nmodel: {name: mlp, hidden: [8]}\ntrain: {epochs: 2}\nstudy: {trials: 2, pruner: {name: none}}\n"
SEARCH = "search:\n  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}\n"
GOOD = BASE + SEARCH


def cfg(text):
    return {"c.yaml": text}


# (id, files, args, exit code, message fragment). {tmp} is the test's folder; configs are written there.
ROWS = [
    ("malformed-yaml", cfg("data: {name: iris\n"), ["validate", "c.yaml"], 3, "c.yaml:2: invalid YAML"),
    ("tabs", cfg("data:\n\tname: iris\n"), ["validate", "c.yaml"], 3, "indent with spaces, not tabs"),
    ("empty-file", cfg(""), ["validate", "c.yaml"], 3, "config is empty"),
    ("top-level-list", cfg("- data\n"), ["validate", "c.yaml"], 3, "top level must be a mapping"),
    (
        "yaml-1.1-base-60",
        cfg("data: {name: iris}\ntrain: {epochs: 1:30}\n"),
        ["validate", "c.yaml"],
        3,
        "c.yaml:2: train.epochs: '1:30' is a base-60 number in YAML 1.1 (PyYAML would read it as 90)",
    ),
    (
        "yaml-1.1-octal",
        cfg("seed: 017\ndata: {name: iris}\n"),
        ["validate", "c.yaml"],
        3,
        "c.yaml:1: seed: '017' has a leading zero: YAML 1.1 reads it as an octal number (hint: write 17",
    ),
    (
        "control-character",
        cfg("data: {name: ir\x1bis}\n"),
        ["validate", "c.yaml"],
        3,
        "c.yaml:1: invalid YAML: column 16: control character U+001B",
    ),
    ("deep-nesting", cfg("data: {name: iris}\nx: " + "[" * 5000 + "\n"), ["validate", "c.yaml"], 3, "invalid YAML"),
    (
        "unknown-section",
        cfg(GOOD + "trainer: {}\n"),
        ["validate", "c.yaml"],
        3,
        "trainer: unknown section (hint: did you mean 'train'?)",
    ),
    (
        "misspelled-key",
        cfg(GOOD.replace("hidden", "hiden")),
        ["validate", "c.yaml"],
        3,
        "model.hiden: unknown key for model 'mlp' (hint: did you mean 'hidden'?)",
    ),
    (
        "duplicate-key",
        cfg(GOOD + "seed: 1\nseed: 2\n"),
        ["validate", "c.yaml"],
        3,
        "seed: duplicate key (first defined on line",
    ),
    (
        "wrong-type",
        cfg(GOOD.replace("epochs: 2", "epochs: two")),
        ["validate", "c.yaml"],
        3,
        "train.epochs: Input should be a valid integer, got str 'two'",
    ),
    (
        "bool-for-int",
        cfg(GOOD.replace("epochs: 2", "epochs: true")),
        ["validate", "c.yaml"],
        3,
        "train.epochs: Input should be a valid integer, got bool True",
    ),
    (
        "nan-value",
        cfg(GOOD + "optimizer: {name: adam, lr: .nan}\n"),
        ["validate", "c.yaml"],
        3,
        "optimizer.lr: must be a finite number",
    ),
    (
        "inf-value",
        cfg(GOOD + "optimizer: {name: adam, eps: .inf}\n"),
        ["validate", "c.yaml"],
        3,
        "optimizer.eps: must be a finite number",
    ),
    (
        "empty-search-space",
        cfg(BASE),
        ["search", "c.yaml"],
        3,
        "search: has no entries, so all 2 trials would train the same config",
    ),
    (
        "population-batch-norm",
        cfg(GOOD),
        ["search", "c.yaml", "--set", "study.population=2", "--set", "model.norm=batch"],
        3,
        "study.population: trials cannot train together: the model uses batch norm, whose running statistics are not vectorized",
    ),
    (
        "population-train-time",
        cfg(
            GOOD.replace("study: {", "study: {population: 2, objectives: [{metric: val_loss}, {metric: train_time}], ")
        ),
        ["validate", "c.yaml"],
        3,
        "study.population: members of a population share their training time, so train_time cannot be an objective",
    ),
    (
        "population-zero",
        cfg(GOOD.replace("study: {", "study: {population: 0, ")),
        ["validate", "c.yaml"],
        3,
        "study.population: Input should be greater than or equal to 1",
    ),
    (
        "low-above-high",
        cfg(BASE + "search:\n  optimizer.lr: {low: 0.1, high: 0.01}\n"),
        ["validate", "c.yaml"],
        3,
        "`low <= high` must hold, but got (low=0.1, high=0.01)",
    ),
    (
        "log-low-zero",
        cfg(BASE + "search:\n  optimizer.lr: {low: 0, high: 0.1, log: true}\n"),
        ["validate", "c.yaml"],
        3,
        "a log range needs low > 0",
    ),
    (
        "step-with-log",
        cfg(BASE + "search:\n  optimizer.lr: {low: 0.01, high: 0.1, log: true, step: 0.01}\n"),
        ["validate", "c.yaml"],
        3,
        "step and log cannot be combined",
    ),
    (
        "empty-choices",
        cfg(BASE + "search:\n  model.hidden: {choices: []}\n"),
        ["validate", "c.yaml"],
        3,
        "search.model.hidden.choices: must be a non-empty list",
    ),
    (
        "duplicate-choices",
        cfg(BASE + "search:\n  train.batch_size: {choices: [16, 16]}\n"),
        ["validate", "c.yaml"],
        3,
        "duplicate choices: 16",
    ),
    (
        "unknown-component",
        cfg(GOOD + "optimizer: {name: adamm}\n"),
        ["validate", "c.yaml"],
        3,
        "optimizer.name: unknown optimizer 'adamm' (hint: did you mean 'adam'?)",
    ),
    (
        "negative-lr",
        cfg(GOOD + "optimizer: {name: adam, lr: -0.1}\n"),
        ["validate", "c.yaml"],
        3,
        "optimizer.lr: Invalid learning rate: -0.1",
    ),
    (
        "beta-at-one",
        cfg(GOOD + "optimizer: {name: adam, betas: [0.9, 1.0]}\n"),
        ["validate", "c.yaml"],
        3,
        "Invalid beta parameter at index 1",
    ),
    (
        "step-size-zero",
        cfg(GOOD + "schedule: {name: step, step_size: 0}\n"),
        ["validate", "c.yaml"],
        3,
        "schedule.step_size: step_size must be >= 1",
    ),
    (
        "search-key-addresses-nothing",
        cfg(BASE + "search:\n  optimizer.lrr: {low: 0.01, high: 0.1}\n"),
        ["validate", "c.yaml"],
        3,
        "search.optimizer.lrr: value 0.01 gives an invalid config: unknown key for optimizer",
    ),
    (
        "when-on-unknown-key",
        cfg(GOOD + "  init.weight: {choices: [zeros], when: {optimizer.nmae: [sgd]}}\n"),
        ["validate", "c.yaml"],
        3,
        "when: must name another search entry",
    ),
    (
        "python-object-tag",
        cfg(GOOD + "x: !!python/object/apply:os.system ['true']\n"),
        ["validate", "c.yaml"],
        3,
        "tag not allowed",
    ),
    (
        "alias-bomb",
        cfg(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]\n" for p, n in zip("abcdefg", "bcdefgh"))
        ),
        ["validate", "c.yaml"],
        3,
        "expands to more than 100000 nodes",
    ),
    ("huge-file", cfg("a: " + "x" * 1_000_100 + "\n"), ["validate", "c.yaml"], 3, "file is larger than 1000000 bytes"),
    (
        "non-utf8",
        {"c.yaml": b"data: {name: iris}\nnote: caf\xe9\n"},
        ["validate", "c.yaml"],
        3,
        "c.yaml:2: file is not valid UTF-8",
    ),
    ("stdin-empty", {}, ["validate", "-"], 3, "<stdin>: config is empty"),
    ("bad-set", cfg(GOOD), ["search", "c.yaml", "--set", "optimizer.lr"], 2, "--set expects KEY=VALUE"),
    (
        "set-unknown-key",
        cfg(GOOD),
        ["search", "c.yaml", "--set", "optimizer.lrr=1e-3"],
        3,
        "optimizer.lrr: unknown key for optimizer 'adamw'",
    ),
    ("study-name-slash", cfg(GOOD), ["search", "c.yaml", "--study", "a/b"], 2, "invalid study name 'a/b'"),
    ("study-name-dotdot", cfg(GOOD), ["search", "c.yaml", "--study", ".."], 2, "invalid study name '..'"),
    ("study-name-absolute", cfg(GOOD), ["search", "c.yaml", "--study", "/etc/x"], 2, "invalid study name '/etc/x'"),
    ("study-name-newline", cfg(GOOD), ["search", "c.yaml", "--study", "a\nb"], 2, "invalid study name"),
    # An empty name is not "the latest study": report/train --best/predict would answer for another one.
    ("report-empty-study-name", {}, ["report", "", "--runs", "{tmp}/runs"], 2, "invalid study name ''"),
    (
        "train-best-empty-study-name",
        {},
        ["train", "--best", "--study", "", "--runs", "{tmp}/runs"],
        2,
        "invalid study name ''",
    ),
    (
        "config-name-bad",  # in the file: a config problem (exit 3) at its line, and `validate` says it too
        cfg(GOOD.replace("name: bad", "name: ../../x")),
        ["search", "c.yaml"],
        3,
        "c.yaml:1: name: invalid study name '../../x'",
    ),
    (
        "config-name-bad-validate",
        cfg(GOOD.replace("name: bad", "name: ../../x")),
        ["validate", "c.yaml"],
        3,
        "c.yaml:1: name: invalid study name '../../x'",
    ),
    ("search-empty-study-name", cfg(GOOD), ["search", "c.yaml", "--study", ""], 2, "invalid study name ''"),
    (
        "plugin-not-allowed",
        cfg(GOOD.replace("data: {name: iris}", "data: {name: 'os:system'}")),
        ["validate", "c.yaml"],
        3,
        "is user code, and importing it runs it (hint: pass --allow-plugin os",
    ),
    (
        "missing-data-file",
        cfg(GOOD.replace("data: {name: iris}", "data: {name: csv, path: nope.csv, target: y}")),
        ["validate", "c.yaml"],
        4,
        "data file not found: nope.csv",
    ),
    (
        "empty-data-file",
        {**cfg(GOOD.replace("data: {name: iris}", "data: {name: csv, path: d.csv, target: y}")), "d.csv": ""},
        ["validate", "c.yaml"],
        4,
        "data file is empty",
    ),
    (
        "nan-in-data",
        {
            **cfg(GOOD.replace("data: {name: iris}", "data: {name: csv, path: d.csv, target: y}")),
            "d.csv": "a,y\n" + "nan,0\n1,1\n" * 10,
        },
        ["validate", "c.yaml"],
        4,
        "data.path: d.csv row 2, column 'a': 'nan' is NaN (a missing value)",
    ),
    (
        "unknown-test-labels",
        {
            **cfg(GOOD.replace("data: {name: iris}", "data: {name: npz, path: d.npz, X_test: Xt, y_test: yt}")),
            "d.npz": "NPZ",
        },
        ["validate", "c.yaml"],
        4,
        "test labels [7] never occur in the training labels",
    ),
    (
        "empty-split",
        {
            **cfg(GOOD.replace("data: {name: iris}", "data: {name: csv, path: d.csv, target: y, test_fraction: 0.01}")),
            "d.csv": "a,y\n1,0\n2,1\n3,0\n4,1\n",
        },
        ["validate", "c.yaml"],
        4,
        "test split of 0.01 leaves an empty set from 4 rows",
    ),
    (
        "unavailable-device",
        cfg(GOOD),
        ["search", "c.yaml", "--devices", "cuda:3"],
        4,
        "--devices cuda:3: device 'cuda:3' is not available",
    ),
    (
        "unavailable-device-with-workers",  # worker 0 checks the devices: the parent never imports torch
        cfg(GOOD),
        ["search", "c.yaml", "--devices", "cpu,cuda:3", "--workers", "2"],
        4,
        "--devices cpu,cuda:3: device 'cuda:3' is not available",
    ),
    (
        "unavailable-device-dry-run",
        cfg(GOOD),
        ["search", "c.yaml", "--devices", "cuda:1", "--dry-run"],
        4,
        "--devices cuda:1: device 'cuda:1' is not available",
    ),
    (
        "auto-among-devices",
        cfg(GOOD),
        ["search", "c.yaml", "--devices", "auto,cpu"],
        2,
        "--devices 'auto,cpu' is not a device list",
    ),
    (
        "huge-seed",
        cfg("seed: 1000000000000000000000000000000\n" + GOOD),
        ["validate", "c.yaml"],
        3,
        "c.yaml:1: seed: must be at most 2147483647",
    ),
    (
        "huge-threads",
        cfg(GOOD.replace("train: {epochs: 2}", "train: {epochs: 2, threads: 1000000000000000000000000000000}")),
        ["validate", "c.yaml"],
        3,
        "train.threads: Input should be less than or equal to 1024",
    ),
    (
        "fp16-on-cpu",
        cfg(GOOD.replace("train: {epochs: 2}", "train: {epochs: 2, precision: fp16, device: cpu}")),
        ["validate", "c.yaml"],
        3,
        "train.precision: fp16 needs a CUDA device; train.device is cpu (hint: use bf16 or fp32)",
    ),
    ("huge-timeout", cfg(GOOD), ["search", "c.yaml", "--timeout", "99999999999d"], 2, "at most 366d"),
    ("zero-timeout", cfg(GOOD), ["search", "c.yaml", "--timeout", "0"], 2, "--timeout '0' must be more than 0"),
    ("runs-is-a-file", cfg(GOOD) | {"afile": "x"}, ["list", "--runs", "afile"], 2, "--runs afile is a file"),
    (
        "set-value-not-a-number",
        cfg(GOOD),
        ["validate", "c.yaml", "--set", "optimizer.lr=fast"],
        3,
        "error: --set optimizer.lr=fast: optimizer.lr: Input should be a valid number, got str 'fast'\n",
    ),
    (
        "set-value-quoted-number",
        cfg(GOOD),
        ["validate", "c.yaml", "--set", "train.epochs='3'"],
        3,
        "--set train.epochs=3: train.epochs: Input should be a valid integer, got str '3' (hint: write numbers without quotes)",
    ),
    (
        "bad-devices-flag",
        cfg(GOOD),
        ["search", "c.yaml", "--devices", "gpu0"],
        2,
        "--devices 'gpu0' is not a device list",
    ),
    (
        "untrusted-checkpoint",
        {**cfg(GOOD + "train: {finetune: {checkpoint: evil.pt}}\n".replace("train:", "train:")), "evil.pt": "PICKLE"},
        ["validate", "c.yaml"],
        3,
        None,
    ),
    (
        "bad-timeout",
        cfg(GOOD),
        ["search", "c.yaml", "--timeout", "an hour"],
        2,
        "--timeout 'an hour' is not a duration",
    ),
    ("bad-format", {}, ["report", "--format", "yaml"], 2, "unknown --format 'yaml'"),
    ("unknown-study", {}, ["report", "nosuch"], 5, "no study 'nosuch'"),
    ("train-best-nothing", {}, ["train", "--best"], 5, "no study found under"),
    ("stdin-for-train-without-best", {}, ["train"], 2, "give either a CONFIG or --best"),
]


def _write(tmp, files):
    for name, content in files.items():
        path = tmp / name
        if content == "NPZ":
            rng = np.random.default_rng(0)
            np.savez(
                path,
                X=rng.normal(size=(40, 2)),
                y=rng.integers(0, 2, 40),
                Xt=rng.normal(size=(5, 2)),
                yt=np.array([0, 1, 7, 0, 1]),
            )
        elif content == "PICKLE":
            import argparse

            import torch

            torch.save({"state_dict": {}, "x": argparse.Namespace()}, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(cli, tmp_path, monkeypatch, row):
    name, files, args, code, fragment = row
    if name == "unavailable-device":
        import torch

        if torch.cuda.device_count() > 3:
            pytest.skip("this machine has 4+ GPUs")
    if name == "untrusted-checkpoint":
        # the finetune section must replace train: rather than duplicate it
        files = cfg(GOOD.replace("train: {epochs: 2}", "train: {epochs: 2, finetune: {checkpoint: evil.pt}}")) | {
            "evil.pt": "PICKLE"
        }
        code, fragment = 4, "holds objects other than tensors and plain data; refusing to unpickle it"
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, files)
    result = (
        cli(*args, "--runs", tmp_path / "runs")
        if args[0] in ("search", "report", "train")
        else cli(*args, input="" if "-" in args else None)
    )
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert all(line.startswith("error: ") for line in result.stderr.splitlines())
    assert not (tmp_path / "runs").exists()  # nothing written


def test_the_catalogue_is_complete():
    assert len(ROWS) >= 40


def test_config_changed_between_resumes(cli, write_config, runs):
    assert cli("search", write_config(), "--runs", runs, "--trials", "1").exit_code == 0
    result = cli("search", write_config(TINY.replace("hidden: [16]", "hidden: [32]")), "--runs", runs)
    assert result.exit_code == 5 and "~ model.hidden: [16] -> [32]" in result.stderr


def test_train_best_when_every_trial_failed(cli, write_config, runs):
    text = TINY.replace(
        "optimizer: {name: adam, lr: 0.01}", "optimizer: {name: sgd, lr: 1e8}\ninit: {weight: normal, std: 1.0}"
    ).replace("low: 1e-3, high: 1e-1", "low: 1e7, high: 1e9")
    assert cli("search", write_config(text), "--runs", runs).exit_code == 6
    result = cli("train", "--best", "--runs", runs)
    assert result.exit_code == 5 and "has no completed trial yet: nothing to train" in result.stderr


def test_corrupt_checkpoint(cli, write_config, runs, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage")
    text = TINY.replace(
        "train: {epochs: 3, batch_size: 32}", f"train: {{epochs: 3, finetune: {{checkpoint: '{bad}'}}}}"
    )
    result = cli("validate", write_config(text))
    assert result.exit_code == 4 and "cannot be loaded safely: it is corrupt or not a checkpoint" in result.stderr


def test_code_has_no_unsafe_loading():
    """Only safe YAML, only weights-only checkpoints, no pickle, no eval: scanned in the source itself."""
    import re
    from pathlib import Path

    source = {p: p.read_text() for p in (Path(__file__).resolve().parents[2] / "tunekit").rglob("*.py")}
    for path, text in source.items():
        assert not re.search(r"yaml\.(load|full_load|unsafe_load)\(", text), path
        assert not re.search(r"yaml\.(Loader|FullLoader|UnsafeLoader)\b", text), path
        assert not re.search(r"\bpickle\.loads?\(|(?<![.\w])eval\(|(?<![.\w])exec\(", text), (
            path
        )  # model.eval() is fine
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
    assert any("torch.load(" in t for t in source.values())  # the scan does see the loads it guards


@pytest.mark.parametrize("command", ["validate", "search", "train"])
def test_a_missing_or_malformed_config_is_said_before_torch_loads(tmp_path, command):
    # Before: validate/search/train imported torch (~3 s) before saying the file was not there.
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    probe = (
        "import sys\nfrom tunekit.cli import main\n"
        "for name in ('nope.yaml', 'bad.yaml'):\n"
        f"    sys.argv = ['tunekit', '{command}', name]\n"
        "    try:\n        main()\n    except SystemExit as exc:\n        print(exc.code)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["4", "3", "False"], out.stderr
    assert "config file not found: nope.yaml" in out.stderr and "bad.yaml:" in out.stderr
