"""LightningDataModule for lang-seg's segmentation datasets."""
from __future__ import annotations

from typing import List, Optional

import pytorch_lightning as pl
import torch

from . import default_workers
from .registry import data_root, dataset_class, dataset_labels, get_dataset


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
    loading processes, at most one per core (``default_workers``)."""

    def __init__(self, data_path: Optional[str] = None, dataset: str = "ade20k", batch_size: int = 1,
                 base_size: Optional[int] = None, crop_size: Optional[int] = None, num_workers: Optional[int] = None,
                 blur: bool = False, seed: Optional[int] = None):
        super().__init__()
        reader = dataset_class(dataset)  # an unknown name stops here, with the choices
        base_size, crop_size = base_size or reader.BASE_SIZE, crop_size or reader.CROP_SIZE
        self.save_hyperparameters()  # the sizes as resolved
        self.trainset = self.valset = None
        self.skip_batches = 0  # of the next training epoch: a run resumed mid-epoch (lang_seg.modules.callbacks.Interruptible)

    @property
    def root(self) -> str:
        return str(data_root(self.hparams.data_path))

    @property
    def labels(self) -> List[str]:
        """The dataset's class names, in class-id order: the model's label set when none is given."""
        opened = self.trainset or self.valset
        return opened.labels if opened is not None else dataset_labels(self.hparams.dataset, self.hparams.data_path)

    @property
    def workers(self) -> int:
        return default_workers() if self.hparams.num_workers is None else self.hparams.num_workers

    def setup(self, stage: Optional[str] = None) -> None:
        h = self.hparams
        common = dict(root=self.root, base_size=h.base_size, crop_size=h.crop_size)
        if stage in (None, "fit") and self.trainset is None:
            self.trainset = get_dataset(h.dataset, split="train", mode="train",
                                        blur=h.blur, seed=h.seed, **common)
        if stage in (None, "fit", "validate") and self.valset is None:
            self.valset = get_dataset(h.dataset, split="val", mode="val", **common)

    def train_dataloader(self):
        seed = self.hparams.seed
        trainer = self.trainer
        rank, replicas = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = (EpochSampler(len(self.trainset), seed, self.hparams.batch_size, rank, replicas)
                   if seed is not None else None)
        if sampler is not None:
            sampler.skip, self.skip_batches = self.skip_batches * self.hparams.batch_size, 0
            if trainer is not None:
                # Lightning creates the loader's iterator before its set_epoch, and with workers the iterator
                # draws the first indices at once: a resumed run would repeat epoch 0's order otherwise
                sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        return torch.utils.data.DataLoader(
            self.trainset, batch_size=self.hparams.batch_size, shuffle=sampler is None, sampler=sampler,
            drop_last=True, num_workers=self.workers,
        )

    def val_dataloader(self):
        return torch.utils.data.DataLoader(
            self.valset, batch_size=self.hparams.batch_size, shuffle=False, num_workers=self.workers,
        )
