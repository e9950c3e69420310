"""Benchmark 8: the default thread policy on a quiet and on a busy machine.

The same single-process search (the quickstart's model and space on digits, random sampler, no
pruning, so every run trains the same trials) with the default threads and with each explicit
`train.threads` from 1 to the core count, first on a quiet machine, then with one busy-loop
process per core running beside it (a user's laptop with a build or a browser going). Figures are
the summed training time of the trials (time_s, from the study) and the wall time of the command;
each round runs every policy once, interleaved, and the ratio default ÷ best explicit is taken
per round (this VM's speed drifts between rounds by more than the effect), then the median.

`--today SRC` adds the default of another checkout (PYTHONPATH=SRC), e.g. the previous commit in
a git worktree, for "no slower than today on a quiet machine".

    python benchmarks/threads.py --repeats 3 [--today /tmp/tunekit-before]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
name: threads
seed: 0
data: {name: digits}
model: {name: mlp, hidden: [256, 256], activation: relu, dropout: 0.1}
optimizer: {name: adamw, lr: 1e-3, weight_decay: 1e-4}
schedule: {name: cosine, warmup_epochs: 2}
train: {epochs: EPOCHS, batch_size: 64}
study: {trials: TRIALS, sampler: {name: random, seed: 0}, pruner: {name: none}}
search:
  optimizer.lr: {low: 1e-4, high: 1e-2, log: true}
  model.dropout: {low: 0.0, high: 0.5}
"""


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def one_search(threads: int | None, trials: int, epochs: int, src: str | None) -> tuple[float, float]:
    """(summed trial training seconds, wall seconds) of one search."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.yaml"
        config.write_text(CONFIG.replace("EPOCHS", str(epochs)).replace("TRIALS", str(trials)))
        command = [sys.executable, "-m", "tunekit", "search", str(config), "--runs", tmp, "-q"]
        if threads:
            command += ["--set", f"train.threads={threads}"]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=tmp)  # cwd: `-m` imports from it
        wall = time.perf_counter() - started
        report = subprocess.run(
            [sys.executable, "-m", "tunekit", "report", "threads", "--runs", tmp, "--json"],
            check=True,
            capture_output=True,
            env=env,
            cwd=tmp,
        )
    trained = sum(t["duration_s"] or 0 for t in json.loads(report.stdout)["trials"])
    return trained, wall


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--today", help="a checkout whose default to compare with on the quiet machine")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    policies: list[tuple[str, int | None, str | None]] = [("default", None, None)]
    policies += [(f"threads={n}", n, None) for n in range(1, cores + 1)]
    if args.today:
        policies.append(("today's default", None, args.today))
    results = {}
    for load in (0, cores):
        loops = busy_loops(load)
        try:
            rounds = []
            for _ in range(args.repeats):
                rounds.append({name: one_search(n, args.trials, args.epochs, src) for name, n, src in policies})
        finally:
            for p in loops:
                p.kill()
                p.wait()
        label = "quiet" if load == 0 else f"{load} busy loops"
        explicit = [name for name, n, src in policies if n]
        for what, index in (("training", 0), ("wall", 1)):
            ratio = statistics.median(r["default"][index] / min(r[e][index] for e in explicit) for r in rounds)
            medians = {name: round(statistics.median(r[name][index] for r in rounds), 2) for name, _, _ in policies}
            line = f"{label:>14}  {what:>8}: " + "  ".join(f"{k} {v:.2f}s" for k, v in medians.items())
            print(f"{line}  default / best explicit {ratio:.2f}")
            results[f"{label} {what}"] = {"seconds": medians, "default_over_best_explicit": round(ratio, 3)}
            if args.today:
                today = statistics.median(r["default"][index] / r["today's default"][index] for r in rounds)
                print(f"{'':>14}  {what:>8}: default / today's default {today:.2f}")
                results[f"{label} {what}"]["default_over_today"] = round(today, 3)
    print(json.dumps({"bench": "threads", "cores": cores, "trials": args.trials, "epochs": args.epochs, **results}))


if __name__ == "__main__":
    main()
