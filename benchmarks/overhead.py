"""Benchmark 3: what tunekit + Optuna add to each trial (sampling, storage, files, model building),
as a share of the study's wall time. Training time is the sum of each trial's epoch times (from its
metrics.jsonl); everything else between the first trial's start and the last trial's end is overhead.

    python benchmarks/overhead.py --trials 50 500
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = """
name: overhead
data: {{name: digits}}
model: {{name: mlp, hidden: {hidden}}}
optimizer: {{name: adamw, lr: 1e-3}}
train: {{epochs: {epochs}, batch_size: 128}}
study: {{trials: 50, sampler: {{name: tpe, seed: 0}}, pruner: {{name: none}}}}
search:
  optimizer.lr: {{low: 1e-4, high: 1e-1, log: true}}
  model.dropout: {{low: 0.0, high: 0.5}}
  train.batch_size: {{choices: [64, 128, 256]}}
  optimizer.weight_decay: {{low: 1e-6, high: 1e-2, log: true}}
  optimizer.eps: {{low: 1e-9, high: 1e-6, log: true}}
"""


# micro: ~0.1 s trials, the worst case for overhead; quickstart-sized: ~0.5-1 s trials, typical of the demo.
SIZES = {"micro": {"hidden": "[64]", "epochs": 5}, "quickstart": {"hidden": "[256, 256]", "epochs": 20}}


def measure(trials: int, size: str) -> dict:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.yaml"
        config.write_text(CONFIG.format(**SIZES[size]))
        subprocess.run(
            [sys.executable, "-m", "tunekit", "search", str(config), "--runs", tmp, "--trials", str(trials), "-q"],
            check=True,
            capture_output=True,
        )
        study_dir = Path(tmp) / "overhead"
        storage = JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
        done = optuna.load_study(study_name="overhead", storage=storage).trials
        training = sum(
            json.loads(line)["epoch_time"]
            for t in done
            for line in (study_dir / "trials" / f"{t.number:05d}" / "metrics.jsonl").read_text().splitlines()
        )
    wall = (done[-1].datetime_complete - done[0].datetime_start).total_seconds()
    return {
        "trials": trials,
        "size": size,
        "wall_s": wall,
        "training_s": training,
        "overhead_share": (wall - training) / wall,
        "overhead_ms_per_trial": 1000 * (wall - training) / trials,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--sizes", nargs="+", default=["micro", "quickstart"], choices=list(SIZES))
    args = parser.parse_args()
    rows = [measure(n, size) for size in args.sizes for n in args.trials]
    for r in rows:
        print(
            f"{r['size']:>10} {r['trials']:>4} trials: overhead {100 * r['overhead_share']:.1f}% of wall time "
            f"({r['overhead_ms_per_trial']:.0f} ms per trial; {r['training_s']:.1f}s training of {r['wall_s']:.1f}s)"
        )
    print(json.dumps({"benchmark": "overhead", "results": rows}))


if __name__ == "__main__":
    main()
