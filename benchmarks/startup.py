"""Benchmark 5: `tunekit --help` wall time, and the latency from launching `tunekit search` to the
first trial starting (imports, validation, data, study creation).

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
            subprocess.run([exe, "search", str(HERE.parent / "configs" / "quickstart.yaml"), "--runs", runs, "--trials", "1", "-q"],
                           check=True, capture_output=True)
            storage = JournalStorage(JournalFileBackend(str(Path(runs) / "quickstart" / "optuna.journal")))
            first = optuna.load_study(study_name="quickstart", storage=storage).trials[0]
            latencies.append(first.datetime_start.timestamp() - launched)
    print(f"tunekit --help: {1000 * statistics.median(helps):.0f} ms (median of {len(helps)}); "
          f"first trial starts {statistics.median(latencies):.2f} s after launch (median of {len(latencies)})")
    print(json.dumps({"benchmark": "startup", "help_s": statistics.median(helps), "first_trial_s": statistics.median(latencies)}))


if __name__ == "__main__":
    main()
