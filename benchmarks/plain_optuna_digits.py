"""The baseline for benchmark 2: a one-file Optuna script written the way Optuna's PyTorch example
(optuna-examples/pytorch/pytorch_simple.py) is — a define-by-run model, TPE + median pruner,
torch DataLoaders — on the same digits split tunekit uses. Prints one JSON line per finished trial.

    python benchmarks/plain_optuna_digits.py --seed 0 --trials 30
"""

import argparse
import json
import time

import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tunekit.components.data import load_split  # the same split and standardization, so only the tuner differs

EPOCHS = 20
BATCHSIZE = 128


def define_model(trial, n_in, n_out):
    n_layers = trial.suggest_int("n_layers", 1, 3)
    layers = []
    for i in range(n_layers):
        out_features = trial.suggest_int(f"n_units_l{i}", 4, 512, log=True)
        layers += [nn.Linear(n_in, out_features), nn.ReLU(), nn.Dropout(trial.suggest_float(f"dropout_l{i}", 0.0, 0.5))]
        n_in = out_features
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def objective(trial, split):
    model = define_model(trial, split.X_train.shape[1], 10)
    optimizer_name = trial.suggest_categorical("optimizer", ["Adam", "RMSprop", "SGD"])
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    optimizer = getattr(torch.optim, optimizer_name)(model.parameters(), lr=lr)
    train_loader = DataLoader(TensorDataset(split.X_train, split.y_train), batch_size=BATCHSIZE, shuffle=True)
    valid_loader = DataLoader(TensorDataset(split.X_val, split.y_val), batch_size=BATCHSIZE)
    for epoch in range(EPOCHS):
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in valid_loader:
                correct += model(data).argmax(dim=1).eq(target).sum().item()
        accuracy = correct / len(valid_loader.dataset)
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.exceptions.TrialPruned()
    return accuracy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    split = load_split("digits", {}, 0.2, 0.2, True, seed=0)
    torch.manual_seed(args.seed)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed), pruner=optuna.pruners.MedianPruner()
    )
    started = time.perf_counter()

    def report(study, trial):
        print(
            json.dumps({"t": time.perf_counter() - started, "state": trial.state.name, "value": trial.value}),
            flush=True,
        )

    study.optimize(lambda t: objective(t, split), n_trials=args.trials, callbacks=[report])


if __name__ == "__main__":
    main()
