"""Benchmark 6: population training vs the same trials trained one after another.

Part 1, the trainer: K runs of one architecture on digits that differ in learning rate and seed,
trained sequentially with `fit` and together with `fit_population`; same epochs, same data, no
pruning. Rounds alternate (sequential, population, ...) so drift hits both; the figure is the
median of sequential time / population time.

Part 2, a whole study: configs/population.yaml (48 trials, TPE, median pruner) with
study.population 1, 8 (ramped: the first trials alone, then 2, 4, 8) and 8 from the first trial
(`8-noramp`), in-process (start-up excluded for all); per sampler seed: the wall time, the time to
the first told trial, the time to the first trial at 0.97 validation accuracy (as benchmark 2), and
the best found, then each mode's times as median ratios to population 1 (within one run).

    python benchmarks/population.py [--repeats 3] [--epochs 5] [--device cpu] [--study-seeds 0 1 2]
                                    [--modes 1 8 8-noramp] [--no-trainer]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tunekit.config.load import load_config, validate_document
from tunekit.config.yaml_io import parse_yaml
from tunekit.train.build import build_run, check_buildable
from tunekit.train.trainer import fit
from tunekit.train.vectorized import fit_population

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
data: {{name: digits}}
model: {{name: mlp, hidden: {hidden}, dropout: 0.1}}
optimizer: {{name: {optimizer}, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: {batch}, device: {device}}}
"""

CASES = [  # (hidden, batch, optimizer)
    ([128], 64, "sgd"),
    ([128], 64, "adamw"),
    ([256, 256], 64, "sgd"),
    ([256, 256], 128, "adamw"),
    ([512, 512], 128, "adamw"),
]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def trainer_case(hidden, batch, optimizer, k: int, epochs: int, repeats: int, device: str) -> dict:
    text = CONFIG.format(hidden=hidden, batch=batch, optimizer=optimizer, epochs=epochs, device=device)
    base = check_buildable(validate_document(parse_yaml(text)))
    lrs = [0.003 * 1.5**i for i in range(k)]

    def runs(round_):
        built = [build_run(base, torch.device(device), seed=100 * round_ + i) for i in range(k)]
        for run, lr in zip(built, lrs):
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            run.schedule.base_lrs = [lr for _ in run.optimizer.param_groups]
        return built

    ratios, seq_times, pop_times = [], [], []
    for r in range(repeats + 1):  # round 0 warms up and is dropped
        members = runs(r)
        started = time.perf_counter()
        for i, run in enumerate(members):
            fit(run, seed=100 * r + i, shuffle_seed=100 * r, monitor="val_accuracy", direction="maximize")
        _sync(device)
        seq = time.perf_counter() - started
        members = runs(r)
        started = time.perf_counter()
        fit_population(members, shuffle_seed=100 * r, monitor="val_accuracy", direction="maximize")
        _sync(device)
        pop = time.perf_counter() - started
        if r:
            seq_times.append(seq)
            pop_times.append(pop)
            ratios.append(seq / pop)
    return {
        "hidden": hidden,
        "batch": batch,
        "optimizer": optimizer,
        "k": k,
        "speedup": statistics.median(ratios),
        "sequential_s": statistics.median(seq_times),
        "population_s": statistics.median(pop_times),
        "repeats": repeats,
    }


# Val accuracy on digits: benchmark 2's target, and two the baseline trial (0.972) does not reach.
TARGETS = (0.97, 0.98, 0.985)


def study_case(mode: str, seed: int, device: str) -> dict:
    """One study run in-process; `mode` is the population size, `8-noramp` for 8 from the first trial."""
    from tunekit.runs import StudyDir
    from tunekit.study.options import SearchOptions
    from tunekit.study.search import run_search
    from tunekit.study.storage import load_study

    population, _, noramp = mode.partition("-")
    overrides = [f"study.population={population}", f"study.sampler.seed={seed}", f"train.device={device}"]
    if noramp:
        overrides.append("study.population_ramp=false")
    config = load_config(str(REPO / "configs" / "population.yaml"), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        opts = SearchOptions(runs=Path(tmp), quiet=True, log=lambda line: None)
        started_wall = time.time()
        started = time.perf_counter()
        summary = run_search(config, opts)
        wall = time.perf_counter() - started
        trials = load_study(StudyDir(Path(tmp), summary["study"]), None).get_trials(deepcopy=False)
    told = sorted(t.datetime_complete.timestamp() - started_wall for t in trials if t.datetime_complete)
    out = {"mode": mode, "seed": seed, "wall_s": wall, "first_told_s": told[0] if told else None}
    for target in TARGETS:
        reached = [
            t.datetime_complete.timestamp() - started_wall
            for t in trials
            if t.state.name == "COMPLETE" and t.value is not None and t.value >= target
        ]
        out[f"to_{target}_s"] = min(reached) if reached else None
    return {
        **out,
        "best": summary["best"]["value"],
        "states": summary["states"],
    }


def _ratio(a, b):
    return a / b if a is not None and b is not None else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--study-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument(
        "--modes", nargs="+", default=["1", "8", "8-noramp"], help="population sizes; the first is the base"
    )
    parser.add_argument("--no-trainer", action="store_true", help="only the studies (part 2)")
    args = parser.parse_args()

    trainer = []
    for hidden, batch, optimizer in [] if args.no_trainer else CASES:
        for k in args.k:
            r = trainer_case(hidden, batch, optimizer, k, args.epochs, args.repeats, args.device)
            trainer.append(r)
            print(
                f"trainer  mlp {str(hidden):<11} batch {batch:<4} {optimizer:<6} K={k}: population is {r['speedup']:.2f}x faster "
                f"({r['population_s']:.2f} s vs {r['sequential_s']:.2f} s sequential, median of {r['repeats']})",
                flush=True,
            )

    studies = []
    if args.study_seeds:
        study_case(args.modes[0], 99, args.device)  # warms up (first-call costs), dropped
    for n, seed in enumerate(args.study_seeds):
        # Interleaved per seed, in a rotating order, so drift and order effects hit every mode.
        for mode in args.modes[n % len(args.modes) :] + args.modes[: n % len(args.modes)]:
            s = study_case(mode, seed, args.device)
            studies.append(s)
            reached = ", ".join(
                f"{t} after " + ("-" if s[f"to_{t}_s"] is None else f"{s[f'to_{t}_s']:.2f} s") for t in TARGETS
            )
            print(
                f"study    configs/population.yaml seed {seed} population {mode}: {s['wall_s']:.1f} s, "
                f"first told after {s['first_told_s']:.2f} s, {reached}, "
                f"best val_accuracy {s['best']:.4f}, {s['states']}",
                flush=True,
            )
    base = args.modes[0]
    ratios: dict[str, dict[str, float | None]] = {}
    for mode in args.modes[1:]:
        per_seed = [
            (a, b)
            for a in studies
            for b in studies
            if a["mode"] == base and b["mode"] == mode and a["seed"] == b["seed"]
        ]
        figures = {}
        for key in ("wall_s", "first_told_s", *(f"to_{t}_s" for t in TARGETS)):
            got = [r for r in (_ratio(b[key], a[key]) for a, b in per_seed) if r is not None]
            figures[key] = statistics.median(got) if got else None
        ratios[mode] = figures
        print(
            f"study    population {mode} / population {base} (median over seeds {args.study_seeds}; below 1 is faster): "
            + ", ".join(f"{k} {v:.2f}x" if v is not None else f"{k} -" for k, v in figures.items())
        )
    print(
        json.dumps(
            {
                "benchmark": "population",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "trainer": trainer,
                "study": studies,
                "study_ratios": ratios,  # per mode: its time / the first mode's (wall, first told, to target)
            }
        )
    )


if __name__ == "__main__":
    main()
