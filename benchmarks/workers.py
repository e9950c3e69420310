"""Benchmark 4: trials per minute with --workers 2 vs --workers 1 on this machine (CPU).
The same trials (random sampler, no pruning) each way. Two rates: steady state (first trial's start
to last trial's end, from the journal) and wall time including start-up (each spawned worker
imports torch again, which a short study feels).

    python benchmarks/workers.py --repeats 6
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
name: workers
data: {name: digits}
model: {name: mlp, hidden: [256, 256]}
optimizer: {name: adamw, lr: 1e-3}
train: {epochs: 10, batch_size: 64}
study: {trials: 32, sampler: {name: random, seed: 0}, pruner: {name: none}}
search:
  optimizer.lr: {low: 1e-4, high: 1e-2, log: true}
"""


TRIALS = 32


def trials_per_minute(workers: int) -> tuple[float, float]:
    """(steady-state rate, wall-clock rate) in trials per minute."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.yaml"
        config.write_text(CONFIG)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tunekit", "search", str(config), "--runs", tmp, "--workers", str(workers), "-q"],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        storage = JournalStorage(JournalFileBackend(str(Path(tmp) / "workers" / "optuna.journal")))
        trials = optuna.load_study(study_name="workers", storage=storage).trials
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return TRIALS / (span / 60), TRIALS / (wall / 60)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    one, two = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both
        one.append(trials_per_minute(1))
        two.append(trials_per_minute(2))
    # Each round runs both settings back to back, so the ratio is taken per round and its median
    # reported: this VM's speed drifts between rounds by more than the effect being measured.
    steady = statistics.median(b[0] / a[0] for a, b in zip(one, two))
    wall = statistics.median(b[1] / a[1] for a, b in zip(one, two))
    import os

    print(
        f"steady state: --workers 1 {statistics.median(t[0] for t in one):.1f}, --workers 2 {statistics.median(t[0] for t in two):.1f} trials/min, ratio {steady:.2f}; "
        f"wall clock incl. start-up: ratio {wall:.2f} ({TRIALS} trials, {os.cpu_count()} cores)"
    )
    print(
        json.dumps(
            {
                "benchmark": "workers",
                "cores": os.cpu_count(),
                "one": one,
                "two": two,
                "steady_ratio": steady,
                "wall_ratio": wall,
            }
        )
    )


if __name__ == "__main__":
    main()
