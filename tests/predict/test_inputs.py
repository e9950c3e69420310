"""New data read for a model in bounded chunks: the chunks add up to the whole input, whatever their size."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tunekit.errors import DataError
from tunekit.predict.inputs import csv_chunks, npz_chunks


class Model:
    """What reading inputs asks of a Predictor: the features it takes."""

    def __init__(self, names=None, n=3, shape=None, target=None):
        self.feature_names, self.n_features, self.target_name = names, n, target
        self.input_shape = shape or (n,)

    def features(self, X):
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1)


def chunks(text: str, model: Model, rows: int) -> list[np.ndarray]:
    return list(csv_chunks(io.StringIO(text), "new.csv", model, rows))


@pytest.mark.parametrize("rows", [1, 2, 3, 10_000])
def test_csv_chunks_are_bounded_and_add_up_to_the_file(rows):
    text = "c,price,a,b\n3,99,1,2\n\n6,99,4,5\n9,99,7,8\n12,99,10,11\n"  # a blank line, the target ignored
    got = chunks(text, Model(["a", "b", "c"], target="price"), rows)
    assert all(len(c) <= rows for c in got)
    assert np.concatenate(got).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]


def test_a_bad_cell_is_named_by_its_row_as_an_editor_counts_it():
    text = "a,b,c\n1,2,3\n\n4,,6\n"
    with pytest.raises(DataError, match=r"row 4, column 'b' is empty"):
        chunks(text, Model(["a", "b", "c"]), 1)


def test_without_column_names_columns_go_by_position_header_or_not():
    model = Model(None, n=2)
    assert np.concatenate(chunks("1,2\n3,4\n", model, 1)).tolist() == [[1, 2], [3, 4]]
    assert np.concatenate(chunks("x,y\n1,2\n", model, 5)).tolist() == [[1, 2]]
    with pytest.raises(DataError, match="row 1 has 3 columns; this model takes 2 features"):
        chunks("1,2,3\n", model, 5)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npz_rows_stream_in_chunks(tmp_path, save, order):
    X = np.asfortranarray(np.arange(70.0).reshape(10, 7)) if order == "F" else np.arange(70.0).reshape(10, 7)
    path = tmp_path / "x.npz"
    save(path, X=X, y=np.zeros(10))
    got = list(npz_chunks(path, Model(n=7), rows=4))
    assert [len(c) for c in got] == [4, 4, 2] and np.array_equal(np.concatenate(got), X)


def test_npz_images_are_rows_of_their_pixels(tmp_path):
    X = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2)
    np.savez(tmp_path / "img.npz", X=X)
    got = np.concatenate(list(npz_chunks(tmp_path / "img.npz", Model(n=4, shape=(1, 2, 2)), rows=10)))
    assert got.tolist() == X.reshape(2, 4).tolist()
    with pytest.raises(DataError, match=r"shape \(2, 1, 2, 2\); this model takes rows of 5 features"):
        list(npz_chunks(tmp_path / "img.npz", Model(n=5), rows=10))
