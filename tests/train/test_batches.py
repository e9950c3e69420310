"""One batching rule for every engine: `full`, the folded one-row tail, and each step's rows."""

import torch

from tunekit.train.batches import Batches, rows_per_batch, steps_per_epoch


def test_full_is_one_batch_of_every_row_and_a_size_above_n_is_n():
    assert rows_per_batch(90, "full") == 90 and steps_per_epoch(90, "full") == 1
    assert rows_per_batch(90, 500) == 90 and steps_per_epoch(90, 500) == 1
    assert steps_per_epoch(90, 1) == 90  # stochastic gradient descent: one row per step


def test_every_row_is_trained_once_per_epoch_and_a_one_row_tail_joins_the_batch_before():
    for n, size in [(90, 32), (65, 32), (64, 32), (7, 1), (10, "full"), (33, 32)]:
        batches = Batches.of(n, size)
        order = torch.randperm(n)
        seen = torch.cat([batches.rows(order, s) for s in range(batches.steps)])
        assert sorted(seen.tolist()) == list(range(n)), (n, size)
        sizes = [len(batches.rows(order, s)) for s in range(batches.steps)]
        assert min(sizes) > 1 or batches.size == 1, (n, size, sizes)  # batch norm needs two rows
