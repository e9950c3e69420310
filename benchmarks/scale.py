"""Benchmark 11: a 10,000-trial study. Does tunekit's per-trial overhead stay flat as the study grows,
how many journal bytes does a trial cost, how long does `report` take on it, and does Optuna
itself still read it?

The study is real (the CLI, `tunekit search`, one process): cheap trials of a 4-unit MLP on iris,
one full-batch epoch each (~3 ms of training), random sampler (TPE's own cost grows with the
study by design, and is Optuna's), no pruner, two params (a float and a component switch).
Per trial, overhead = the time from the previous trial's end to this one's end (journal
timestamps) minus its training (its metrics.jsonl epoch time): sampling, the ask lock, dead-trial
recovery, the journal, files, model building, the tell, best.yaml and the progress line.
Figures are medians over 50-trial windows at ~trial 100 and at the study's end, as a ratio.

    python benchmarks/scale.py --trials 10000      # ~4 minutes on 2 cores
    python benchmarks/scale.py --trials 1000       # a quick run
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
name: scale
seed: 0
data: {name: iris}
model: {name: mlp, hidden: [4]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 1, batch_size: full}
study: {sampler: {name: random, seed: 0}, pruner: {name: none}}
search:
  optimizer.lr: {low: 1e-3, high: 1e-1, log: true}
  optimizer.name: {choices: [adam, sgd]}
"""
WINDOW = 50


def _timed(args: list[str], cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done


def _journal_bytes(path: Path, trials: int) -> dict:
    """Bytes per trial of the journal, and which part of it is tunekit's own (its user attributes)."""
    total, own = path.stat().st_size, 0
    for line in path.read_bytes().splitlines(keepends=True):
        record = json.loads(line)
        if record["op_code"] in (2, 8):  # study / trial user attributes: what tunekit writes
            own += len(line)
    return {
        "journal_bytes_per_trial": total / trials,
        "tunekit_bytes_per_trial": own / trials,
        "optuna_bytes_per_trial": (total - own) / trials,
    }


def measure(trials: int) -> dict:
    import optuna
    import yaml
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "scale.yaml"
        config.write_text(CONFIG)
        tk = [sys.executable, "-m", "tunekit"]
        search_s, _ = _timed([*tk, "search", str(config), "--runs", tmp, "--trials", str(trials), "-q"], tmp)
        study_dir = Path(tmp) / "scale"
        journal = study_dir / "optuna.journal"
        storage = JournalStorage(JournalFileBackend(str(journal)))
        study = optuna.load_study(study_name="scale", storage=storage)
        done = study.get_trials(deepcopy=False)
        training = [
            sum(
                json.loads(line)["epoch_time"]
                for line in (study_dir / "trials" / f"{t.number:05d}" / "metrics.jsonl").read_text().splitlines()
            )
            for t in done
        ]
        overhead = [
            (done[i].datetime_complete - done[i - 1].datetime_complete).total_seconds() - training[i]
            for i in range(1, len(done))
        ]
        early = overhead[100 - WINDOW // 2 : 100 + WINDOW // 2]
        late = overhead[-WINDOW:]
        reports = {}
        for fmt in ("table", "json", "csv"):
            reports[fmt], out = _timed([*tk, "report", "scale", "--runs", tmp, "--format", fmt], tmp)
            if fmt == "json":
                summary = json.loads(out.stdout)
                best = summary["best"]
                trial_yaml = (study_dir / "trials" / f"{best['number']:05d}" / "config.yaml").read_text()
                config_exact = yaml.safe_load(trial_yaml) == best["config"]
        # Optuna's own CLI reads the journal, and finds the same best trial as the report.
        optuna_cli = [str(Path(sys.executable).with_name("optuna")), "best-trial", "--study-name", "scale"]
        cli_s, cli = _timed([*optuna_cli, "--storage", str(journal), "-f", "json"], tmp)
        optuna_best = json.loads(cli.stdout)
        row = {
            "trials": len(done),
            "search_s": search_s,
            "overhead_ms_at_100": 1000 * statistics.median(early),
            "overhead_ms_at_end": 1000 * statistics.median(late),
            "overhead_ratio": statistics.median(late) / statistics.median(early),
            **_journal_bytes(journal, len(done)),
            "report_s": reports,
            "best_config_exact": config_exact,
            "optuna_load_study_trials": len(done),
            "optuna_cli_s": cli_s,
            "optuna_cli_same_best": optuna_best["number"] == best["number"] and optuna_best["params"] == best["params"],
        }
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    if args.trials < 200:
        parser.error("--trials must be at least 200 (the early window sits at trial ~100)")
    r = measure(args.trials)
    print(
        f"{r['trials']} trials in {r['search_s']:.0f}s: overhead per trial {r['overhead_ms_at_100']:.1f} ms at ~100, "
        f"{r['overhead_ms_at_end']:.1f} ms at the end (x{r['overhead_ratio']:.2f}, target <= 2); journal "
        f"{r['journal_bytes_per_trial']:.0f} B/trial (tunekit {r['tunekit_bytes_per_trial']:.0f}, Optuna "
        f"{r['optuna_bytes_per_trial']:.0f}; target <= 1024); report "
        + ", ".join(f"{k} {v:.2f}s" for k, v in r["report_s"].items())
        + f" (target < 2 s); best config exact: {r['best_config_exact']}; `optuna best-trial` agrees: "
        f"{r['optuna_cli_same_best']} ({r['optuna_cli_s']:.1f}s); optuna.load_study reads {r['optuna_load_study_trials']} trials"
    )
    print(json.dumps({"benchmark": "scale", "results": [r]}))


if __name__ == "__main__":
    main()
