"""Upstream lang-seg's segmentation training recipe as a Lightning 2.x module, the same on both backends.

- learning rate ``base_lr / 16 * batch_size``; SGD, momentum 0.9, weight decay (Adam with upstream's
  ``--midasproto``); parameter groups: ``net.pretrained`` at the base rate, ``net.scratch`` at 10x (the
  CLIP text tower is not optimised);
- polynomial decay ``(1 - epoch / max_epochs) ** 0.9``, stepped once per epoch as upstream's ``LambdaLR`` is;
- cross-entropy with ``ignore_index``; validation's pixel accuracy and mIoU are upstream's, through the one
  implementation ``test_lseg.py --eval`` uses too (``lang_seg.metrics``: mIoU is the mean over all classes,
  absent ones counting 0; the mean over the classes present is ``mIoU_present``), logged as ``train_loss``,
  ``val_loss``, ``pix_acc``, ``mIoU``, ``mIoU_present``.

What differs per backend is the network, its forward and backward and the optimizer's update: the torch
module (``lseg_module.LSegModule``) and the MindSpore one (``mindspore.backend``) implement
``train_forward``, ``forward_eval``, ``parameter_groups`` and ``make_optimizer``; Lightning drives both the
same way.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from lang_seg.errors import LangSegError
from lang_seg.metrics import SegmentationMetric

POLY_POWER = 0.9
ADAM_BETAS = (0.9, 0.999)  # upstream's --midasproto


def check_data_fits(module, datamodule) -> None:
    """Before anything runs or is written: the module's label set has the datasets' class count, and the
    crop size is a multiple of the ViT's patch size (otherwise MindSpore fails deep in a shape error) and,
    with one image a batch, large enough for BatchNorm to train."""
    crop = getattr(datamodule, "hparams", {}).get("crop_size")
    patch = module.options.config.vit.patch_size
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
                               f"pass {classes} labels in the dataset's class order (or none for the dataset's own)")


def poly_lambda(max_epochs: int):
    """Upstream's schedule factor for epoch ``e``."""

    def factor(epoch: int) -> float:
        return pow(1.0 - epoch / max_epochs, POLY_POWER)

    return factor


class LSegmentationModule(pl.LightningModule):
    def __init__(self, base_lr: float = 0.004, batch_size: int = 1, max_epochs: int = 200,
                 weight_decay: float = 1e-4, momentum: float = 0.9, ignore_index: int = -1, num_classes: int = 150,
                 midasproto: bool = False):
        super().__init__()
        self.lr = base_lr / 16 * batch_size
        self.max_epochs = max_epochs
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.ignore_index = ignore_index
        self.num_classes = num_classes
        self.midasproto = midasproto
        metric = dict(num_classes=num_classes, ignore_index=ignore_index)
        self.train_pix_acc = MulticlassAccuracy(average="micro", **metric)
        self.val_metric = SegmentationMetric(num_classes, ignore_index)  # #19: upstream's figures, as test_lseg.py

    def check_data(self, datamodule) -> None:
        """``check_data_fits`` once per data module: the commands call it before the Trainer writes its log
        folder; ``setup`` calls it for runs started from Python."""
        if getattr(self, "_data_checked", None) is not datamodule:
            check_data_fits(self, datamodule)
            self._data_checked = datamodule

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.datamodule is not None:
            self.check_data(self.trainer.datamodule)  # the data module's setup has run

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target, ignore_index=self.ignore_index)

    # -- what each backend implements ------------------------------------
    def train_forward(self, img: torch.Tensor, target: torch.Tensor):
        """``(loss, pred)`` of one training micro-batch, ``pred`` each pixel's best label; its gradients are
        ready for ``backward``."""
        raise NotImplementedError

    def forward_eval(self, img: torch.Tensor) -> torch.Tensor:
        """``(N, L, H, W)`` logits in eval mode."""
        raise NotImplementedError

    def make_optimizer(self, kind: str, groups, **hyper):
        """The optimizer Lightning steps: ``kind`` 'sgd' or 'adam' over ``groups`` (torch's param-group
        dicts over ``parameter_groups()``)."""
        raise NotImplementedError

    def parameter_groups(self):
        """The parameters of ``net.pretrained`` and of ``net.scratch``: upstream's two groups."""
        raise NotImplementedError

    # -- the recipe ------------------------------------------------------
    def training_step(self, batch, batch_idx):
        img, target = batch
        loss, pred = self.train_forward(img, target)
        self.train_pix_acc(pred, target)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)  # under DDP: the mean over processes
        self.log("train_pix_acc", self.train_pix_acc, on_step=False, on_epoch=True)
        return loss

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

    def configure_optimizers(self):
        backbone, decoder = self.parameter_groups()
        groups = [{"params": backbone, "lr": self.lr}, {"params": decoder, "lr": self.lr * 10}]
        if self.midasproto:  # upstream's "midas optimization protocol"
            opt = self.make_optimizer("adam", groups, lr=self.lr, betas=ADAM_BETAS, weight_decay=self.weight_decay)
        else:
            opt = self.make_optimizer("sgd", groups, lr=self.lr, momentum=self.momentum,
                                      weight_decay=self.weight_decay)
        sch = torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(self.max_epochs))
        return [opt], [sch]
