"""LightningDataModule for lang-seg's segmentation datasets: one, or several in one run (``mixture``)."""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Union

import pytorch_lightning as pl
import torch

from lang_seg.errors import LangSegError

from . import default_workers
from .mixture import Mixture, MixtureSampler, Tagged, check_sizes, parse_weights
from .registry import run_labels, source_names, sources


class EpochSampler(torch.utils.data.DistributedSampler):
    """Shuffles with ``seed + epoch`` and yields ``(index, epoch)``; Lightning calls ``set_epoch``.

    The order and (through the dataset) the augmentation of every epoch are
    fixed by the seed, so a resumed run sees the batches an uninterrupted run
    would have seen; ``skip`` leaves out this process's first samples of the next
    pass once (a run resumed mid-epoch, ``lang_seg.modules.callbacks.Interruptible``).

    With several processes (``replicas``) it gives each one its slice of the
    global batch: at step ``s``, process ``r`` gets items
    ``[s*R*b + r*b, s*R*b + (r+1)*b)`` of the epoch's order, so ``R`` processes of
    batch ``b`` see, at every step, the images (and augmentation) one process of
    batch ``R*b`` sees. A ``DistributedSampler`` already, so Lightning keeps it.
    """

    def __init__(self, size: int, seed: int, batch_size: int = 1, rank: int = 0, replicas: int = 1):
        super().__init__(range(size), num_replicas=replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.size, self.batch_size = size, batch_size
        self.global_batch = batch_size * replicas
        self.skip = 0

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        steps = self.size // self.global_batch
        mine = [int(i) for s in range(steps)
                for i in order[s * self.global_batch + self.rank * self.batch_size:][:self.batch_size]]
        if self.num_replicas == 1:  # one process keeps the last partial batch for the loader to drop
            mine = [int(i) for i in order]
        skip, self.skip = self.skip, 0
        return iter([(i, self.epoch) for i in mine[skip:]])

    def __len__(self) -> int:
        return self.size if self.num_replicas == 1 else (self.size // self.global_batch) * self.batch_size


class SegmentationDataModule(pl.LightningDataModule):
    """Train (random scale/crop/mirror) and val (centre crop) loaders over ``dataset`` at ``data_path``
    (relative to the working directory; None or ``bundled``: the small datasets bundled with the package).
    ``base_size``/``crop_size`` default to the dataset's (upstream's); ``num_workers`` None: upstream's 16
    loading processes, at most one per core (``default_workers``).

    Several datasets (``dataset='ade20k,pascal_voc'`` or a list, ``data_path`` one path each or one for all):
    each training batch comes from one of them (``data/mixture.py``: in proportion to their sizes, or to
    ``dataset_weights``) and carries its index, ``(image, target, source)``; validation has one loader a
    dataset. Each keeps its own sizes unless ``base_size``/``crop_size`` are given.
    """

    def __init__(self, data_path: Union[None, str, List[str]] = None, dataset: Union[str, List[str]] = "ade20k",
                 batch_size: int = 1, base_size: Optional[int] = None, crop_size: Optional[int] = None,
                 num_workers: Optional[int] = None, blur: bool = False, seed: Optional[int] = None,
                 dataset_weights: Union[None, str, List[float]] = None):
        super().__init__()
        self.sources = sources(dataset, data_path)  # an unknown name, lists of different lengths stop here
        self.names = source_names(self.sources)
        self.weights = parse_weights(dataset_weights, len(self.sources))
        if len(self.sources) == 1:
            reader = self.sources[0][0]
            base_size, crop_size = base_size or reader.BASE_SIZE, crop_size or reader.CROP_SIZE
        self.save_hyperparameters()  # the sizes as resolved
        self.trainsets: List = []
        self.valsets: List = []
        self.skip_batches = 0  # of the next training epoch: a run resumed mid-epoch (lang_seg.modules.callbacks.Interruptible)

    @property
    def labels(self) -> Union[List[str], Dict[str, List[str]]]:
        """The dataset's class names, in class-id order: the model's label set when none is given; with several
        datasets ``{name: class names}``, in the run's order."""
        opened = self.trainsets or self.valsets
        if not opened:
            return run_labels(self.hparams.dataset, self.hparams.data_path)
        return opened[0].labels if len(opened) == 1 else {name: d.labels for name, d in zip(self.names, opened)}

    @property
    def trainset(self):
        return self._only(self.trainsets)

    @property
    def valset(self):
        return self._only(self.valsets)

    def _only(self, opened):
        if len(self.sources) > 1:
            raise LangSegError(f"this data module reads {len(self.sources)} datasets: use trainsets / valsets")
        return opened[0] if opened else None

    @property
    def roots(self) -> List[str]:
        """Each dataset's folder as resolved (relative paths against the working directory, ``bundled``)."""
        return [str(root) for _, root in self.sources]

    @property
    def workers(self) -> int:
        return default_workers() if self.hparams.num_workers is None else self.hparams.num_workers

    def setup(self, stage: Optional[str] = None) -> None:
        h = self.hparams
        sizes = dict(base_size=h.base_size, crop_size=h.crop_size)
        if stage in (None, "fit") and not self.trainsets:
            self.trainsets = [reader(root, split="train", mode="train", blur=h.blur, seed=h.seed, **sizes)
                              for reader, root in self.sources]
        if stage in (None, "fit", "validate") and not self.valsets:
            self.valsets = [reader(root, split="val", mode="val", **sizes) for reader, root in self.sources]

    def check_batches(self, processes: int = 1) -> None:
        """Several datasets: each holds at least one global batch (every step draws from one of them)."""
        if len(self.sources) > 1 and self.trainsets:
            check_sizes(self.names, [len(d) for d in self.trainsets], self.hparams.batch_size * processes, processes)

    def train_dataloader(self):
        seed, batch = self.hparams.seed, self.hparams.batch_size
        trainer = self.trainer
        rank, replicas = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if len(self.sources) > 1:
            if seed is None:  # every process must draw the same datasets in the same order: rank 0's choice
                seed = random.randrange(2 ** 31)
                seed = trainer.strategy.broadcast(seed) if trainer is not None else seed
            sampler = MixtureSampler([len(d) for d in self.trainsets], seed, batch, rank, replicas, self.weights,
                                     self.names)
            dataset = Mixture(self.trainsets)
        else:
            sampler = EpochSampler(len(self.trainset), seed, batch, rank, replicas) if seed is not None else None
            dataset = self.trainset
        if sampler is not None:
            sampler.skip, self.skip_batches = self.skip_batches * batch, 0
            if trainer is not None:
                # Lightning creates the loader's iterator before its set_epoch, and with workers the iterator
                # draws the first indices at once: a resumed run would repeat epoch 0's order otherwise
                sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch, shuffle=sampler is None, sampler=sampler,
            drop_last=True, num_workers=self.workers,
        )

    def val_dataloader(self):
        loaders = [torch.utils.data.DataLoader(
            Tagged(valset, source) if len(self.valsets) > 1 else valset, batch_size=self.hparams.batch_size,
            shuffle=False, num_workers=self.workers,
        ) for source, valset in enumerate(self.valsets)]
        return loaders[0] if len(loaders) == 1 else loaders
