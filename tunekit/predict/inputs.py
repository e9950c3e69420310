"""New data for a trained model: a CSV (a file or stdin) or an .npz, read in chunks of rows.

CSV columns are matched to the model's feature columns by name, in any order; a missing column,
or one the model never saw (other than the training target, which is ignored), is an error that
names it. Data without column names (bundled sets, npz) is taken by position. Memory stays
bounded: a chunk of rows at a time is parsed, predicted and written.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from tunekit.errors import DataError
from tunekit.predict.predictor import CHUNK_ROWS, Predictor
from tunekit.registry import did_you_mean


def read_chunks(source: str, predictor: Predictor, rows: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """(n, n_features) float64 arrays of at most `rows` rows from `source`: a CSV path, `-` (CSV on stdin) or an .npz."""
    if source == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
        try:
            yield from csv_chunks(stream, "stdin", predictor, rows)
        except UnicodeDecodeError:
            raise DataError("stdin is not UTF-8 text", "send UTF-8 CSV") from None
        return
    path = Path(source).expanduser()
    if path.is_dir():
        raise DataError(f"input {source} is a folder", "give a .csv or .npz file, or - to read CSV from stdin")
    if not path.exists():
        raise DataError(f"input not found: {source}", "give a .csv or .npz file, or - to read CSV from stdin")
    if not path.is_file():  # a FIFO, a device: read it as a stream, like stdin
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from csv_chunks(f, source, predictor, rows)
        return
    if path.suffix.lower() == ".npz":
        yield from npz_chunks(path, predictor, rows)
        return
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from csv_chunks(f, source, predictor, rows)
    except UnicodeDecodeError:
        raise DataError(f"{source} is not UTF-8 text", "save the file as UTF-8 CSV") from None


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _parses(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _cell_error(where: str, rowno: int, column: str, cell: str) -> DataError:
    spot = f"{where} row {rowno}, column '{column}'"
    if not cell.strip():
        return DataError(f"{spot} is empty", "fill in the missing values, or drop those rows")
    shown = cell if len(cell) <= 40 else cell[:37] + "..."
    if _number(cell) is None and cell.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity"):
        return DataError(f"{spot}: '{shown}' is not a finite number", "fill in the missing values, or drop those rows")
    return DataError(f"{spot}: '{shown}' is not a number", "encode it as the training data did")


def _columns(header: list[str], where: str, predictor: Predictor) -> list[int]:
    """For each of the model's features, its column in this header; errors name what is missing or extra."""
    names = predictor.feature_names
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{where}: column '{name}' appears twice in the header", "give each column once")
        seen.add(name)
    listed = ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + f", ... (+{len(names) - 12} more)"
    missing = [n for n in names if n not in seen]
    if missing:
        extra = [h for h in header if h not in names and h != predictor.target_name]
        close = did_you_mean(missing[0], extra) if extra else None
        raise DataError(
            f"{where} has no column '{missing[0]}'"
            + (f" (and {len(missing) - 1} more the model needs)" if len(missing) > 1 else ""),
            (f"{close} " if close else "") + f"the model's feature columns are: {listed}",
        )
    extra = [h for h in header if h not in names and h != predictor.target_name]
    if extra:
        raise DataError(
            f"{where} has a column '{extra[0]}' the model was not trained on"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""),
            f"drop it; the model's feature columns are: {listed}",
        )
    return [header.index(n) for n in names]


MAX_LINE = 1_000_000  # characters: a CSV line longer than this is not a row of features


def _lines(stream: TextIO, where: str) -> Iterator[str]:
    """The stream's lines, each read with a bound: endless input without a newline (`< /dev/zero`)
    is an error, not a hang that fills memory."""
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return
        if len(line) >= MAX_LINE and not line.endswith("\n"):
            raise DataError(f"{where}: a line longer than {MAX_LINE} characters", "is this a CSV file?")
        if "\0" in line:
            raise DataError(f"{where}: a NUL character in the input", "is this a CSV file?")
        yield line


def _rows(reader, where: str) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise DataError(f"{where} row {reader.line_num}: not a readable CSV row ({exc})") from None


def csv_chunks(stream: TextIO, where: str, predictor: Predictor, rows: int) -> Iterator[np.ndarray]:
    reader = _rows(csv.reader(_lines(stream, where)), where)
    first = next(reader, None)
    while first is not None and not first:
        first = next(reader, None)  # blank lines before the header
    if first is None:
        raise DataError(f"{where} is empty", "give a header row and data rows")
    first = [cell.strip().lstrip("\ufeff") for cell in first]
    width = predictor.n_features
    pending: list[list[str]] = []
    if predictor.feature_names:
        take = _columns(first, where, predictor)
        names = predictor.feature_names
        start = 2
    else:  # no column names to match: by position, with or without a header row
        if len(first) != width:
            raise DataError(
                f"{where} row 1 has {len(first)} columns; this model takes {width} features, by position",
                "its training data had no column names; give exactly those columns, in order",
            )
        take = list(range(width))
        names = [f"{i + 1}" for i in range(width)]
        start = 2
        if any(_parses(c) or not c for c in first):
            pending.append(first)  # no header (a header is all names): the first row is data
            start = 1
    n_fields = len(first)

    def parse(batch: list[list[str]], first_rowno: int) -> np.ndarray:
        out = np.empty((len(batch), width), dtype=np.float64)
        for r, row in enumerate(batch):
            rowno = first_rowno + r
            if len(row) != n_fields:
                raise DataError(f"{where} row {rowno}: expected {n_fields} fields like row 1, got {len(row)}")
            for j, col in enumerate(take):
                value = _number(row[col])
                if value is None:
                    raise _cell_error(where, rowno, names[j], row[col])
                out[r, j] = value
        return out

    batch, batch_start, rowno = pending, start, start + len(pending) - 1
    for row in reader:
        rowno += 1
        if not row:
            if not batch:
                batch_start = rowno + 1
            continue  # a blank line (row numbers still count it, as an editor does)
        if not batch:
            batch_start = rowno
        batch.append(row)
        if len(batch) >= rows:
            yield parse(batch, batch_start)
            batch = []
    if batch:
        yield parse(batch, batch_start)


def npz_chunks(path: Path, predictor: Predictor, rows: int) -> Iterator[np.ndarray]:
    """Rows of the array `X`, streamed from the archive when it is a plain C-order array."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    with archive:
        members = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
        if "X" not in members:
            raise DataError(f"{path} has no array 'X'", f"arrays: {', '.join(members) or 'none'}; save yours as X")
        with archive.open("X.npy") as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:  # a newer .npy header: let numpy read the array whole
                    shape, fortran, dtype = np.load(path, allow_pickle=False)["X"].shape, True, np.dtype("f8")
            except (ValueError, OSError) as exc:
                raise DataError(f"{path}: array 'X' is not a readable .npy array ({exc})") from None
            if dtype.hasobject:
                raise DataError(f"{path}: array 'X' holds Python objects; save it as numbers")
            shown = tuple(shape)
            per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if len(shape) < 2 or per_row != predictor.n_features:
                raise DataError(
                    f"{path}: array 'X' has shape {shown}; this model takes rows of {predictor.n_features} features"
                    + (f" (shape {predictor.input_shape})" if len(predictor.input_shape) > 1 else "")
                )
            if fortran:  # column-major (or a newer header): rows are not contiguous, read it whole
                arr = np.load(path, allow_pickle=False)["X"].reshape(shape[0], -1)
                for i in range(0, len(arr), rows):
                    yield predictor.features(arr[i : i + rows])
                return
            row_bytes = per_row * dtype.itemsize
            for i in range(0, shape[0], rows):
                n = min(rows, shape[0] - i)
                data = f.read(n * row_bytes)
                if len(data) != n * row_bytes:
                    raise DataError(f"{path}: array 'X' is truncated")
                yield predictor.features(np.frombuffer(data, dtype=dtype).reshape(n, per_row))
