"""Benchmark 2: time to reach 0.97 validation accuracy on digits — tunekit's quickstart search vs the
plain Optuna script (plain_optuna_digits.py) — over several sampler seeds. Time counts from the
start of the first trial (process start-up excluded for both) to the end of the first trial that
reaches the target; a run that never reaches it within the trial cap counts as its full time (and
is marked). The figure is the median over seeds of tunekit's time / the script's time.

    python benchmarks/search_vs_optuna.py --seeds 0 1 2 --trials 30
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = 0.97
HERE = Path(__file__).resolve().parent


def plain(seed: int, trials: int) -> tuple[float, bool]:
    out = subprocess.run(
        [sys.executable, str(HERE / "plain_optuna_digits.py"), "--seed", str(seed), "--trials", str(trials)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    hit = next((r["t"] for r in rows if r["state"] == "COMPLETE" and r["value"] >= TARGET), None)
    return (hit, True) if hit is not None else (rows[-1]["t"], False)


def tunekit(seed: int, trials: int) -> tuple[float, bool]:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with tempfile.TemporaryDirectory() as runs:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tunekit",
                "search",
                str(HERE.parent / "configs" / "quickstart.yaml"),
                "--runs",
                runs,
                "--trials",
                str(trials),
                "--set",
                f"study.sampler.seed={seed}",
                "-q",
            ],
            check=True,
            capture_output=True,
        )
        storage = JournalStorage(JournalFileBackend(str(Path(runs) / "quickstart" / "optuna.journal")))
        trials_done = optuna.load_study(study_name="quickstart", storage=storage).trials
    t0 = trials_done[0].datetime_start
    hit = next((t for t in trials_done if t.state.name == "COMPLETE" and t.value >= TARGET), None)
    end = (hit or trials_done[-1]).datetime_complete
    return (end - t0).total_seconds(), hit is not None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        tk, tk_hit = tunekit(seed, args.trials)
        po, po_hit = plain(seed, args.trials)
        rows.append(
            {
                "seed": seed,
                "tunekit_s": tk,
                "tunekit_reached": tk_hit,
                "optuna_script_s": po,
                "optuna_script_reached": po_hit,
                "ratio": tk / po,
            }
        )
        print(
            f"seed {seed}: tunekit {tk:6.1f}s{'' if tk_hit else ' (not reached)'}   optuna script {po:6.1f}s{'' if po_hit else ' (not reached)'}   ratio {tk / po:.2f}",
            flush=True,
        )
    ratio = statistics.median(r["ratio"] for r in rows)
    print(f"median time-to-{TARGET} ratio (tunekit / plain Optuna script): {ratio:.2f}")
    print(json.dumps({"benchmark": "search_vs_optuna", "target": TARGET, "median_ratio": ratio, "runs": rows}))


if __name__ == "__main__":
    main()
