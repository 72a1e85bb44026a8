"""Several datasets in one run: each step's batch comes from one dataset, the same on every process.

An epoch is a list of global batches (``schedule``). Dataset ``d`` gives ``steps[d]`` of
them: by default ``len(d) // global_batch``, every image at most once, so the datasets
are drawn in proportion to their size; ``--dataset_weights`` shares the same number of
steps out by weight instead (a dataset weighted above its size goes through its images
more than once an epoch, each pass reshuffled). Which dataset trains at which step is a
shuffle of those counts. Everything is drawn from ``seed + epoch`` alone, so it is
reproducible, a resumed run can skip to where it stopped, and every process computes
the same list: process ``r`` of ``R`` (batch ``b``) takes items ``[r*b, (r+1)*b)`` of
each global batch of ``R*b``, as ``EpochSampler`` does for one dataset. A step never
mixes datasets across processes, so DDP's gradient average (torch's, or the MindSpore
bridge's all-reduce) is always over one label set.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from lang_seg.errors import LangSegError


class Tagged(torch.utils.data.Dataset):
    """``dataset``'s items with its index in the run: ``(image, target, source)``."""

    def __init__(self, dataset, source: int):
        self.dataset, self.source = dataset, source

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return (*self.dataset[key], self.source)


class Mixture(torch.utils.data.Dataset):
    """The training sets of a run, read with ``(source, index, draw)`` keys from ``MixtureSampler``:
    ``(image, target, source)``."""

    def __init__(self, datasets: Sequence):
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, key):
        source, index, draw = key
        return (*self.datasets[source][(index, draw)], source)


def parse_weights(weights, count: int) -> Optional[List[float]]:
    """``--dataset_weights``: ``'3,1'`` or ``[3, 1]``, one positive number per dataset; None: by size."""
    if weights is None:
        return None
    parts = [w.strip() for w in weights.split(",")] if isinstance(weights, str) else list(weights)
    try:
        values = [float(w) for w in parts]
    except (TypeError, ValueError):
        raise LangSegError(f"--dataset_weights {weights!r}: give one number per dataset, e.g. 3,1") from None
    if len(values) != count:
        raise LangSegError(f"{count} datasets but {len(values)} dataset weights: give one weight per dataset, "
                           f"in the same order (or none: in proportion to their sizes)")
    if not all(v > 0 and v != float("inf") for v in values):
        raise LangSegError(f"--dataset_weights {weights!r}: every weight must be a positive number; "
                           f"leave a dataset out of --dataset to skip it")
    return values


def steps_per_epoch(sizes: Sequence[int], global_batch: int, weights: Optional[Sequence[float]] = None) -> List[int]:
    """The global batches each dataset gives an epoch (at least one each)."""
    full = [size // global_batch for size in sizes]
    if weights is None:
        return full
    total = sum(full)
    return [max(1, round(total * w / sum(weights))) for w in weights]


def check_sizes(names: Sequence[str], sizes: Sequence[int], global_batch: int, processes: int = 1) -> None:
    for name, size in zip(names, sizes):
        if size < global_batch:
            per = f" ({global_batch // processes} a process x {processes})" if processes > 1 else ""
            raise LangSegError(f"{name} has {size} training images, fewer than one batch of {global_batch}{per}: "
                               f"every step draws a whole batch from one dataset; lower --batch_size")


class MixtureSampler(torch.utils.data.DistributedSampler):
    """This process's ``(source, index, draw)`` keys, ``batch_size`` a step, every one of a step from the
    same dataset; ``draw`` seeds the item's augmentation (the epoch, and which pass through the dataset).
    ``skip`` leaves out this process's first keys of the next pass once (a run resumed mid-epoch)."""

    def __init__(self, sizes: Sequence[int], seed: int, batch_size: int = 1, rank: int = 0, replicas: int = 1,
                 weights: Optional[Sequence[float]] = None, names: Optional[Sequence[str]] = None):
        self.sizes = list(sizes)
        self.global_batch = batch_size * replicas
        check_sizes(names or [f"dataset {i}" for i in range(len(sizes))], self.sizes, self.global_batch, replicas)
        self.steps = steps_per_epoch(self.sizes, self.global_batch, weights)
        super().__init__(range(sum(self.steps) * self.global_batch), num_replicas=replicas, rank=rank,
                         shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.skip = 0

    def schedule(self, epoch: int) -> List[Tuple[int, List[Tuple[int, object]]]]:
        """The epoch's global batches: ``(source, [(index, draw), ...])`` a step, the same on every process."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        sources = torch.tensor([d for d, n in enumerate(self.steps) for _ in range(n)])
        order = sources[torch.randperm(len(sources), generator=generator)].tolist()
        batches = []
        for d, (size, count) in enumerate(zip(self.sizes, self.steps)):
            mine, draw = [], 0
            while len(mine) < count:
                perm = torch.randperm(size, generator=generator).tolist()
                tag = epoch if draw == 0 else f"{epoch}.{draw}"  # a second pass is augmented afresh
                keys = [(i, tag) for i in perm]
                mine += [keys[s * self.global_batch:(s + 1) * self.global_batch] for s in range(size // self.global_batch)]
                draw += 1
            batches.append(iter(mine[:count]))
        return [(d, next(batches[d])) for d in order]

    def __iter__(self):
        start, stop = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        keys = [(d, index, draw) for d, batch in self.schedule(self.epoch) for index, draw in batch[start:stop]]
        skip, self.skip = self.skip, 0
        return iter(keys[skip:])

    def __len__(self) -> int:
        return sum(self.steps) * self.batch_size
