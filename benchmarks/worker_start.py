"""Benchmark 10: how soon `--workers N` starts, and what it holds in memory, beside one process.

Each round launches `tunekit search configs/quickstart.yaml --trials T` with `--workers 1` and
with `--workers 2` (order alternating per round, so drift hits both) and measures, from launch:
- the first trial's start and the first trial's end (from the journal's timestamps);
- the peak of the summed RSS of the whole process tree (polled every 20 ms from /proc), and the
  parent's own RSS while its workers train.
Figures are the median over rounds of the per-round ratios `--workers 2` / one process, and the
memory excess `total(2 workers) - 2 x total(1 process)`.

    python benchmarks/worker_start.py --repeats 5
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tree_rss(root: int) -> tuple[int, int]:
    """(RSS of root and all its descendants, RSS of root) in bytes, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total, rss.get(root, 0)


def one_run(exe: str, workers: int, trials: int) -> dict:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with tempfile.TemporaryDirectory() as runs:
        command = [exe, "search", str(HERE.parent / "configs" / "quickstart.yaml"), "--runs", runs]
        command += ["--trials", str(trials), "--workers", str(workers), "-q"]
        launched = time.time()
        proc = subprocess.Popen(command, cwd=runs, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = parent_peak = 0
        while proc.poll() is None:
            total, parent = tree_rss(proc.pid)
            peak, parent_peak = max(peak, total), max(parent_peak, parent)
            time.sleep(0.02)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        storage = JournalStorage(JournalFileBackend(str(Path(runs) / "quickstart" / "optuna.journal")))
        trials_ = optuna.load_study(study_name="quickstart", storage=storage).trials
        first_start = min(t.datetime_start.timestamp() for t in trials_) - launched
        first_end = min(t.datetime_complete.timestamp() for t in trials_) - launched
        return {"first_start_s": first_start, "first_end_s": first_end, "peak_rss": peak, "parent_rss": parent_peak}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    exe = shutil.which("tunekit") or str(Path(sys.executable).parent / "tunekit")
    rounds = []
    for r in range(args.repeats):
        order = (1, 2) if r % 2 == 0 else (2, 1)
        got = {w: one_run(exe, w, args.trials) for w in order}
        rounds.append(got)
        one, two = got[1], got[2]
        print(
            f"round {r}: first trial starts {one['first_start_s']:.2f} s (1 process) / {two['first_start_s']:.2f} s "
            f"(--workers 2), ends {one['first_end_s']:.2f} / {two['first_end_s']:.2f} s; peak RSS "
            f"{one['peak_rss'] / 2**20:.0f} / {two['peak_rss'] / 2**20:.0f} MB (parent {two['parent_rss'] / 2**20:.0f} MB)",
            flush=True,
        )

    def median(f):
        return statistics.median(f(g) for g in rounds)

    result = {
        "benchmark": "worker_start",
        "rounds": len(rounds),
        "first_start_ratio": median(lambda g: g[2]["first_start_s"] / g[1]["first_start_s"]),
        "first_end_ratio": median(lambda g: g[2]["first_end_s"] / g[1]["first_end_s"]),
        "first_start_s_one": median(lambda g: g[1]["first_start_s"]),
        "first_start_s_two": median(lambda g: g[2]["first_start_s"]),
        "rss_one_mb": median(lambda g: g[1]["peak_rss"] / 2**20),
        "rss_two_mb": median(lambda g: g[2]["peak_rss"] / 2**20),
        "rss_excess_mb": median(lambda g: (g[2]["peak_rss"] - 2 * g[1]["peak_rss"]) / 2**20),
        "parent_rss_mb": median(lambda g: g[2]["parent_rss"] / 2**20),
    }
    print(
        f"--workers 2 / 1 process: first trial starts at {result['first_start_ratio']:.2f}x, ends at "
        f"{result['first_end_ratio']:.2f}x (target <= 1.3); total RSS {result['rss_two_mb']:.0f} MB = 2 x "
        f"{result['rss_one_mb']:.0f} MB {result['rss_excess_mb']:+.0f} MB (target <= +150), parent "
        f"{result['parent_rss_mb']:.0f} MB"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
