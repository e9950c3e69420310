"""A starter config for the user's own CSV (`tunekit init --from-csv`), written as commented YAML
from what reading the table found: its task, classes and feature columns."""

from __future__ import annotations

import json
import textwrap


def csv_config(
    name: str,
    data_path: str,
    target: str,
    task: str,
    n_rows: int,
    n_classes: int | None,
    columns: list[str],
    config_file: str = "config.yaml",
) -> str:
    """The YAML text; `data_path` as it should be written (relative to the config's folder),
    `config_file` the name its run line gives the config."""
    what = f"{n_classes} classes" if task == "classification" else "a quantity (regression)"
    listed = textwrap.fill(
        ", ".join(columns), width=96, initial_indent="#   ", subsequent_indent="#   ", break_on_hyphens=False
    )
    metric = "val_accuracy" if task == "classification" else "val_rmse"
    loss = "cross_entropy" if task == "classification" else "mse"
    return f"""\
# yaml-language-server: $schema=tunekit.schema.json
# A starter config for {data_path}: {n_rows} rows; the target '{target}' holds {what}.
# Its {len(columns)} feature columns, in order (every one must be numeric):
{listed}
# Run:  tunekit validate {config_file} && tunekit search {config_file} && tunekit train --best
name: {name}
seed: 0

data:
  name: csv
  path: {json.dumps(data_path)}   # read from this file's folder
  target: {json.dumps(target)}
  task: {task}        # inferred from the target's values; set it to override
  val_fraction: 0.2   # trials are compared on this split
  test_fraction: 0.2  # touched once, by `tunekit train --best`
  standardize: true

model: {{name: mlp, hidden: [64, 64], activation: relu, dropout: 0.1}}
init: {{weight: kaiming_normal, bias: zeros}}
optimizer: {{name: adamw, lr: 1e-3, weight_decay: 1e-4}}
loss: {{name: {loss}}}
train: {{epochs: 30, batch_size: 64, early_stopping: {{patience: 6}}}}
study: {{metric: {metric}, trials: 30, sampler: {{name: tpe, seed: 0}}, pruner: {{name: median}}}}

search:
  optimizer.lr:           {{low: 1e-4, high: 1e-2, log: true}}
  optimizer.weight_decay: {{low: 1e-6, high: 1e-2, log: true}}
  model.hidden:           {{choices: [[64], [64, 64], [128, 128]]}}
  model.dropout:          {{low: 0.0, high: 0.4}}
  train.batch_size:       {{choices: [32, 64, 128]}}
"""
