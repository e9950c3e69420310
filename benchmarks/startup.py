"""Benchmark 5: `tunekit --help` wall time, the latency from launching `tunekit search` to the
first trial starting (imports, validation, data, study creation), and `tunekit report` on a
20-trial quickstart study (reading the journal, importance, rendering).

    python benchmarks/startup.py --repeats 10
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    exe = shutil.which("tunekit") or str(Path(sys.executable).parent / "tunekit")
    helps = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        helps.append(time.perf_counter() - started)
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    latencies = []
    for _ in range(max(3, args.repeats // 3)):
        with tempfile.TemporaryDirectory() as runs:
            launched = time.time()
            subprocess.run(
                [
                    exe,
                    "search",
                    str(HERE.parent / "configs" / "quickstart.yaml"),
                    "--runs",
                    runs,
                    "--trials",
                    "1",
                    "-q",
                ],
                check=True,
                capture_output=True,
            )
            storage = JournalStorage(JournalFileBackend(str(Path(runs) / "quickstart" / "optuna.journal")))
            first = optuna.load_study(study_name="quickstart", storage=storage).trials[0]
            latencies.append(first.datetime_start.timestamp() - launched)
    reports = []
    with tempfile.TemporaryDirectory() as runs:
        subprocess.run(
            [
                exe,
                "search",
                str(HERE.parent / "configs" / "quickstart.yaml"),
                "--runs",
                runs,
                "--set",
                "train.epochs=2",
                "-q",
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(max(3, args.repeats // 2)):
            started = time.perf_counter()
            subprocess.run([exe, "report", "quickstart", "--runs", runs], check=True, capture_output=True)
            reports.append(time.perf_counter() - started)
    print(
        f"tunekit --help: {1000 * statistics.median(helps):.0f} ms (median of {len(helps)}); "
        f"first trial starts {statistics.median(latencies):.2f} s after launch (median of {len(latencies)}); "
        f"tunekit report (20 trials): {statistics.median(reports):.2f} s (median of {len(reports)})"
    )
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "help_s": statistics.median(helps),
                "first_trial_s": statistics.median(latencies),
                "report_s": statistics.median(reports),
            }
        )
    )


if __name__ == "__main__":
    main()
