"""Data loading for the engine: step-indexed, resumable, sharded across processes.

Training batches are a pure function of (seed, step, rank): epoch ``e`` uses the permutation
drawn from ``seed`` and ``e``, and each sample's augmentation is drawn from (seed, e, index).
So a resumed run sees exactly the batches an uninterrupted one would, and N processes with
batch B see the same global batches as one process with batch N x B.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.transforms import sample_rng
from ..errors import ConfigError


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps ``start`` .. ``steps - 1``, this rank's share of the global batch as (epoch, index)."""

    def __init__(self, n: int, batch_size: int, steps: int, seed: int, rank: int = 0, world: int = 1,
                 start: int = 0) -> None:
        self.n, self.batch, self.steps, self.seed = n, batch_size, steps, seed
        self.rank, self.world, self.start = rank, world, start
        self.per_epoch = n // (batch_size * world)
        if self.per_epoch == 0:
            raise ConfigError(f"the training set has {n} samples, fewer than one global batch "
                              f"({batch_size} x {world} processes)")

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = self.batch * self.world
        perm, perm_epoch = None, -1
        for step in range(self.start, self.steps):
            epoch, k = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
                perm_epoch = epoch
            mine = perm[k * g:(k + 1) * g][self.rank * self.batch:(self.rank + 1) * self.batch]
            yield [(epoch, int(i)) for i in mine]


class Augmented(Dataset):
    """A dataset indexed by (epoch, index): raw sample, then the training transform with its own RNG."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        return self.dataset.transform(self.dataset.raw(index), rng=sample_rng(self.seed, epoch, index))


def train_loader(dataset, batch_size: int, steps: int, seed: int, rank: int, world: int, start: int,
                 workers: int) -> DataLoader:
    sampler = StepBatchSampler(len(dataset), batch_size, steps, seed, rank, world, start)
    return DataLoader(Augmented(dataset, seed), batch_sampler=sampler, num_workers=workers,
                      persistent_workers=False)


def eval_loader(dataset, batch_size: int, rank: int, world: int, workers: int) -> DataLoader:
    """Each rank takes every ``world``-th sample, without the padding duplicates that would skew metrics."""
    shard = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers)
