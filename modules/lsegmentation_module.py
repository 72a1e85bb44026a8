"""Upstream lang-seg's segmentation training recipe as a Lightning 2.x module.

- learning rate ``base_lr / 16 * batch_size``; SGD, momentum 0.9, weight decay;
  parameter groups: ``net.pretrained`` at the base rate, ``net.scratch`` at 10x
  (the CLIP text tower is not optimised);
- polynomial decay ``(1 - epoch / max_epochs) ** 0.9``, stepped once per epoch
  as upstream's ``LambdaLR`` is;
- cross-entropy with ``ignore_index``; validation's pixel accuracy and mIoU are
  upstream's, through the one implementation ``test_lseg.py --eval`` uses too
  (``lang_seg.metrics``: mIoU is the mean over all classes, absent ones counting
  0; the mean over the classes present is ``mIoU_present``), logged as
  ``train_loss``, ``val_loss``, ``pix_acc``, ``mIoU``, ``mIoU_present``.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from lang_seg.errors import LangSegError
from lang_seg.metrics import SegmentationMetric

POLY_POWER = 0.9


def check_data_fits(module, datamodule) -> None:
    """Before anything runs or is written: the module's label set has the datasets' class count, and the
    crop size is a multiple of the ViT's patch size (otherwise MindSpore fails deep in a shape error) and,
    with one image a batch, large enough for BatchNorm to train."""
    crop = getattr(datamodule, "hparams", {}).get("crop_size")
    patch = module.net.patch_size
    if crop is not None and crop % patch:
        fit = max(patch, round(crop / patch) * patch)
        raise LangSegError(f"crop size {crop} is not a multiple of the patch size {patch} of the backbone: "
                           f"use e.g. {fit} (--crop_size / --data.crop_size)")
    batch = getattr(datamodule, "hparams", {}).get("batch_size")
    options = getattr(module, "options", None)
    if crop is not None and crop < 2 * patch and batch == 1 and (options is None or options.use_bn):
        raise LangSegError(f"crop size {crop} leaves one value per channel in the decoder's deepest map, and "
                           f"BatchNorm cannot train on that with batch size 1: use a crop size of {2 * patch} or "
                           f"more, or a batch size of 2 or more")
    for dataset in (getattr(datamodule, "trainset", None), getattr(datamodule, "valset", None)):
        classes = getattr(dataset, "num_class", None)
        if classes is not None and classes != module.num_classes:
            raise LangSegError(f"the model has {module.num_classes} labels but the dataset has {classes} classes: "
                               f"pass {classes} labels in the dataset's class order (or none for ADE20K's)")


def poly_lambda(max_epochs: int):
    """Upstream's schedule factor for epoch ``e``."""

    def factor(epoch: int) -> float:
        return pow(1.0 - epoch / max_epochs, POLY_POWER)

    return factor


class LSegmentationModule(pl.LightningModule):
    def __init__(self, base_lr: float = 0.004, batch_size: int = 1, max_epochs: int = 200,
                 weight_decay: float = 1e-4, momentum: float = 0.9, ignore_index: int = -1, num_classes: int = 150):
        super().__init__()
        self.lr = base_lr / 16 * batch_size
        self.max_epochs = max_epochs
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.ignore_index = ignore_index
        self.num_classes = num_classes
        metric = dict(num_classes=num_classes, ignore_index=ignore_index)
        self.train_pix_acc = MulticlassAccuracy(average="micro", **metric)
        self.val_metric = SegmentationMetric(num_classes, ignore_index)  # #19: upstream's figures, as test_lseg.py

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.datamodule is not None:
            check_data_fits(self, self.trainer.datamodule)  # the data module's setup has run

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target, ignore_index=self.ignore_index)

    def train_forward(self, img: torch.Tensor, target: torch.Tensor):
        """``(loss, out)`` of one training batch; Lightning's autograd does the rest."""
        out = self(img)
        return self.loss(out, target), out

    def training_step(self, batch, batch_idx):
        img, target = batch
        loss, out = self.train_forward(img, target)
        self.train_pix_acc(out.argmax(1), target)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)  # under DDP: the mean over processes
        self.log("train_pix_acc", self.train_pix_acc, on_step=False, on_epoch=True)
        return loss

    def forward_eval(self, img: torch.Tensor) -> torch.Tensor:
        return self(img)

    def validation_step(self, batch, batch_idx):
        img, target = batch
        out = self.forward_eval(img)
        pred = out.argmax(1)
        self.val_metric.update(pred, target)
        self.log("val_loss", self.loss(out, target), prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self):
        # over every process's share under DDP, so the same on each (sync_dist: their mean, and no warning)
        figures = {k: v.float() for k, v in self.val_metric.compute().items()}
        self.log("pix_acc", figures["pix_acc"], prog_bar=True, sync_dist=True)
        self.log("mIoU", figures["miou"], prog_bar=True, sync_dist=True)
        self.log("mIoU_present", figures["miou_present"], sync_dist=True)
        self.val_metric.reset()

    def parameter_groups(self):
        return [
            {"params": list(self.net.pretrained.parameters()), "lr": self.lr},
            {"params": list(self.net.scratch.parameters()), "lr": self.lr * 10},
        ]

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameter_groups(), lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay)
        sch = torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(self.max_epochs))
        return [opt], [sch]
