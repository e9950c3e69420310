"""`tunekit predict`: a whole input, chunk by chunk, to CSV or JSON lines on a text stream.

Each chunk is written and flushed before the next is read, so a pipeline (`... | tunekit predict
--study s - | head`) sees rows as they come and memory stays bounded by the chunk size.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from typing import TextIO

import numpy as np

from tunekit.errors import UsageError
from tunekit.predict.inputs import read_chunks
from tunekit.predict.predictor import open_predictor, resolve_checkpoint

FORMATS = ("csv", "jsonl")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def predict_file(
    source: str,
    out: TextIO,
    *,
    checkpoint: str | None = None,
    study: str | None = None,
    runs: str | os.PathLike = "runs",
    fmt: str = "csv",
    proba: bool = False,
) -> int:
    """Predict every row of `source` (a CSV path, an .npz, or `-` for CSV on stdin) to `out`; the row count.

    CSV has a header: `prediction` (a class label, or a value in the target's units), or with
    `proba` one column per class label holding its probability. JSON lines carry the same keys."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format '{fmt}'", f"choose one of: {', '.join(FORMATS)}")
    path = resolve_checkpoint(checkpoint, study, runs)
    predictor = open_predictor(path)
    if proba and predictor.task != "classification":
        raise UsageError(f"--proba: {path} is a regression model; it has no class probabilities", "drop --proba")
    columns = [str(c) for c in predictor.classes] if proba else ["prediction"]
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    labels = predictor.classes
    n = 0
    chunks = read_chunks(source, predictor)
    first = next(chunks, None)  # the input's header is checked before anything is written
    if writer is not None:
        writer.writerow(columns)
    for chunk in itertools.chain([first] if first is not None else [], chunks):
        raw = predictor.outputs(chunk)
        if proba:
            rows = predictor.probabilities(raw).tolist()
        elif predictor.task == "classification":
            rows = [[labels[i]] for i in predictor.class_ids(raw).tolist()]
        else:
            rows = [[v] for v in predictor.values(raw).tolist()]
        if writer is not None:
            writer.writerows(rows)
        else:
            out.write("".join(json.dumps(dict(zip(columns, map(_plain, row)))) + "\n" for row in rows))
        out.flush()
        n += len(rows)
    return n
