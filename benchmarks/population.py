"""Benchmark 6: population training vs the same trials trained one after another.

Part 1, the trainer: K runs of one architecture on digits that differ in learning rate and seed,
trained sequentially with `fit` and together with `fit_population`; same epochs, same data, no
pruning. Rounds alternate (sequential, population, ...) so drift hits both; the figure is the
median of sequential time / population time.

Part 2, a whole study: configs/population.yaml (48 trials, TPE, median pruner) with
study.population 8 vs 1, in-process (start-up excluded for both); the wall time of the study and
the best validation accuracy it found, per sampler seed.

    python benchmarks/population.py [--repeats 3] [--epochs 5] [--device cpu] [--study-seeds 0 1 2]
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


def study_case(population: int, seed: int, device: str) -> dict:
    from tunekit.study.options import SearchOptions
    from tunekit.study.search import run_search

    config = load_config(
        str(REPO / "configs" / "population.yaml"),
        [f"study.population={population}", f"study.sampler.seed={seed}", f"train.device={device}"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        opts = SearchOptions(runs=Path(tmp), quiet=True, log=lambda line: None)
        started = time.perf_counter()
        summary = run_search(config, opts)
        wall = time.perf_counter() - started
    return {
        "population": population,
        "seed": seed,
        "wall_s": wall,
        "best": summary["best"]["value"],
        "states": summary["states"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--study-seeds", type=int, nargs="*", default=[0, 1, 2])
    args = parser.parse_args()

    trainer = []
    for hidden, batch, optimizer in CASES:
        for k in args.k:
            r = trainer_case(hidden, batch, optimizer, k, args.epochs, args.repeats, args.device)
            trainer.append(r)
            print(
                f"trainer  mlp {str(hidden):<11} batch {batch:<4} {optimizer:<6} K={k}: population is {r['speedup']:.2f}x faster "
                f"({r['population_s']:.2f} s vs {r['sequential_s']:.2f} s sequential, median of {r['repeats']})",
                flush=True,
            )

    studies = []
    for seed in args.study_seeds:
        for population in (1, 8):
            s = study_case(population, seed, args.device)
            studies.append(s)
            print(
                f"study    configs/population.yaml seed {seed} population {population}: {s['wall_s']:.1f} s, "
                f"best val_accuracy {s['best']:.4f}, {s['states']}",
                flush=True,
            )
    ratios = [a["wall_s"] / b["wall_s"] for a, b in zip(studies[0::2], studies[1::2])]
    if ratios:
        print(
            f"study    wall time, population 1 / population 8: median {statistics.median(ratios):.2f}x over seeds {args.study_seeds}"
        )
    print(
        json.dumps(
            {
                "benchmark": "population",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "trainer": trainer,
                "study": studies,
                "study_speedup": statistics.median(ratios) if ratios else None,
            }
        )
    )


if __name__ == "__main__":
    main()
