"""What a study learned, read back from disk: the report's data, and what computing it costs."""

import json
import subprocess
import sys

from tests.conftest import REPO, TINY

TWO_PARAMS = TINY.replace("trials: 3", "trials: 6") + "  optimizer.weight_decay: {low: 1e-6, high: 1e-2, log: true}\n"


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout


def test_report_imports_neither_torch_nor_scikit_learn_and_keeps_optunas_importance(cli, write_config, runs):
    assert cli("search", write_config(TWO_PARAMS), "--runs", runs, "-q").exit_code == 0
    report = (
        "import json, sys\nfrom tunekit.cli import app\n"
        f"try:\n    app(['report', 'tiny', '--runs', {str(runs)!r}, '--format', 'json'])\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules)))"
    )
    out = _python(report).splitlines()
    assert json.loads(out[-1]) == []  # scikit-learn would add ~1.5 s to every report (see summary._optuna_importance)
    ours = json.loads("\n".join(out[:-1]))["importance"]
    # Optuna's own importance, with scikit-learn imported the ordinary way, gives the same numbers.
    plain = (
        "import json, sklearn, optuna\nfrom optuna.storages.journal import JournalFileBackend, JournalStorage\n"
        f"s = optuna.load_study(study_name='tiny', storage=JournalStorage(JournalFileBackend({str(runs / 'tiny' / 'optuna.journal')!r})))\n"
        "print(json.dumps(optuna.importance.get_param_importances(s)))"
    )
    theirs = json.loads(_python(plain))
    assert set(ours) == {"optimizer.lr", "optimizer.weight_decay"}
    assert ours == {k: float(v) for k, v in theirs.items()}


def test_a_trial_closed_without_a_result_has_its_duration_in_milliseconds_like_the_others():
    import datetime

    import optuna

    from tunekit.report.summary import trial_row

    start = datetime.datetime(2026, 12, 4, 12, 0, 0)
    interrupted = optuna.trial.FrozenTrial(
        number=3,
        state=optuna.trial.TrialState.FAIL,
        value=None,
        datetime_start=start,
        datetime_complete=start + datetime.timedelta(seconds=1.23456789),
        params={},
        distributions={},
        user_attrs={"reason": "interrupted"},
        system_attrs={},
        intermediate_values={},
        trial_id=3,
    )
    row = trial_row(interrupted)
    assert row["duration_s"] == 1.235 and row["reason"] == "interrupted"
