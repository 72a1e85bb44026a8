"""LightningDataModule of the few-shot benchmarks, for training the zero-shot module (``train_lseg_zs.py``).

As upstream's ``LSegmentationModuleZS`` reads them: training on the fold's training classes (split ``trn``,
one support an episode: the query and its support both train, each scored on the episode's class),
validation on the fold's tested classes (split ``val``, queries only; their supports are drawn, not read).
Pictures are ``img_size`` squares normalised as the backbone expects (ImageNet's statistics for
``clip_resnet101``, as upstream's ``FSSDataset.initialize(imagenet_norm=True)``, else mean = std = 0.5).
With a ``seed``, the training order of every epoch and each episode's support are fixed by it (a resumed
run sees the batches an uninterrupted one would: ``lang_seg.data.datamodule.EpochSampler``).
"""
from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch

from lang_seg.config import BACKBONES
from lang_seg.errors import LangSegError

from .. import default_workers
from ..datamodule import EpochSampler
from . import build_dataset
from .common import IMG_SIZE

TRAIN_SHOT = 1  # upstream's FSSDataset.build_dataloader default


class FewShotDataModule(pl.LightningDataModule):
    """Training (``trn``) and validation (``val``) episodes of ``benchmark``'s ``fold`` under ``datapath`` (HSNet's
    ``Datasets_HSN`` layout); batches are dicts under upstream's keys (``query_img``, ``support_imgs``,
    ``class_id``, ...)."""

    def __init__(self, benchmark: str = "fss", datapath: Optional[str] = None, fold: int = 0, batch_size: int = 4,
                 img_size: int = IMG_SIZE, backbone: str = "clip_vitl16_384", num_workers: Optional[int] = None,
                 seed: Optional[int] = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise LangSegError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")
        if batch_size < 1 or img_size < 1:
            raise LangSegError(f"batch size and picture size must be at least 1, got {batch_size} and {img_size}")
        self.save_hyperparameters()
        self.trainset = self.valset = None
        self.skip_batches = 0  # of the next training epoch (lang_seg.modules.callbacks.Interruptible)

    @property
    def workers(self) -> int:
        return default_workers() if self.hparams.num_workers is None else self.hparams.num_workers

    def _open(self, split: str, load_support: bool):
        h = self.hparams
        return build_dataset(h.benchmark, h.datapath, h.fold, split, TRAIN_SHOT, img_size=h.img_size,
                             norm=BACKBONES[h.backbone].norm, seed=h.seed or 0, load_support=load_support)

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit") and self.trainset is None:
            self.trainset = self._open("trn", load_support=True)
            h = self.hparams
            if len(self.trainset) < h.batch_size:  # every training batch is full (below)
                raise LangSegError(f"the {h.benchmark} training split under {h.datapath} has {len(self.trainset)} "
                                   f"episodes, fewer than the batch size {h.batch_size}: lower --batch_size")
        if stage in (None, "fit", "validate") and self.valset is None:
            self.valset = self._open("val", load_support=False)

    def train_dataloader(self):
        h, trainer = self.hparams, self.trainer
        sampler = None
        if h.seed is not None:
            rank, replicas = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            sampler = EpochSampler(len(self.trainset), h.seed, h.batch_size, rank, replicas)
            sampler.skip, self.skip_batches = self.skip_batches * h.batch_size, 0
            if trainer is not None:  # the epoch Lightning resumes in (see SegmentationDataModule)
                sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        # every batch full: BatchNorm sees the same batch size, MindSpore compiles one training shape
        return torch.utils.data.DataLoader(self.trainset, batch_size=h.batch_size, shuffle=sampler is None,
                                           sampler=sampler, drop_last=True, num_workers=self.workers)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.valset, batch_size=self.hparams.batch_size, shuffle=False,
                                           num_workers=self.workers)
