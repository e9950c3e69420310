"""How one epoch is cut into batches: the `batch_size: full` rule, steps per epoch, each step's rows.

Training alone, the population engine, lr-find, the dry run and the schedules all read these, so
that "full" means one step of every row everywhere and the folded last batch is folded everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


def rows_per_batch(n_train: int, batch_size: int | str) -> int:
    """`full` is every training row in one batch (batch gradient descent); a size above n is n."""
    return n_train if batch_size == "full" else min(int(batch_size), n_train)


def steps_per_epoch(n_train: int, batch_size: int | str) -> int:
    bs = rows_per_batch(n_train, batch_size)
    full, rest = divmod(n_train, bs)
    # A trailing batch of one sample is folded into the one before: batch norm cannot normalize a single row.
    return full + (1 if rest > 1 or (rest == 1 and bs == 1) else 0)


@dataclass(frozen=True)
class Batches:
    """One epoch's batching of `n` rows: `steps` batches of `size` rows, the last taking the rest."""

    n: int
    size: int
    steps: int

    @classmethod
    def of(cls, n_train: int, batch_size: int | str) -> Batches:
        return cls(n_train, rows_per_batch(n_train, batch_size), steps_per_epoch(n_train, batch_size))

    def rows(self, order, step: int):
        """The positions in `order` (a permutation of the rows) that batch `step` trains on."""
        start = step * self.size
        return order[start : start + self.size] if step < self.steps - 1 else order[start:]
