"""Upstream lang-seg's segmentation training recipe as a Lightning 2.x module, the same on both backends.

- learning rate ``base_lr / 16 * batch_size``; SGD, momentum 0.9, weight decay (Adam with upstream's
  ``--midasproto``); parameter groups: ``net.pretrained`` at the base rate, ``net.scratch`` at 10x (the
  CLIP text tower is not optimised);
- polynomial decay ``(1 - epoch / max_epochs) ** 0.9``, stepped once per epoch as upstream's ``LambdaLR`` is;
- cross-entropy with ``ignore_index``; validation's pixel accuracy and mIoU are upstream's, through the one
  implementation ``test_lseg.py --eval`` uses too (``lang_seg.metrics``: mIoU is the mean over all classes,
  absent ones counting 0; the mean over the classes present is ``mIoU_present``), logged as ``train_loss``,
  ``val_loss``, ``pix_acc``, ``mIoU``, ``mIoU_present``;
- several datasets in one run: each batch carries its dataset's index (``split_batch``), the backend scores it
  against that dataset's label set, and every figure but ``train_loss`` is logged per dataset
  (``mIoU/pascal_voc``) with the datasets' mean under the plain name (``metric_name``).

What differs per backend is the network, its forward and backward and the optimizer's update: the torch
module (``lseg_module.LSegModule``) and the MindSpore one (``mindspore.backend``) implement
``train_forward``, ``forward_eval``, ``parameter_groups`` and ``make_optimizer``; Lightning drives both the
same way.
"""
from __future__ import annotations

from itertools import zip_longest
from typing import Mapping, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lang_seg.errors import LangSegError
from lang_seg.metrics import SegmentationMetric

POLY_POWER = 0.9
ADAM_BETAS = (0.9, 0.999)  # upstream's --midasproto


def opened_datasets(datamodule) -> list:
    """The data module's opened datasets, one list a dataset of the run: ``[[its train set, its val set], ...]``."""
    if hasattr(datamodule, "trainsets"):
        pairs = zip_longest(datamodule.trainsets, datamodule.valsets)
    else:  # a data module of one's own
        pairs = [(getattr(datamodule, "trainset", None), getattr(datamodule, "valset", None))]
    return [found for found in ([d for d in pair if d is not None] for pair in pairs) if found]


def _check_label_sets(module, names, counts) -> None:
    """The module's label sets against the data's datasets: one set a dataset, in the same order, each the size
    of its dataset's class count."""
    mine = module.sources
    if len(mine) == 1 and len(counts) == 1:
        if counts[0] != mine[0][1]:
            raise LangSegError(f"the model has {mine[0][1]} labels but the dataset has {counts[0]} classes: "
                               f"pass {counts[0]} labels in the dataset's class order (or none for the dataset's own)")
        return
    theirs = ", ".join(names)
    if len(mine) == 1:
        raise LangSegError(f"the model has one label set but the data has {len(counts)} datasets ({theirs}): give no "
                           f"labels (each dataset's own) or one label list per dataset, {{{names[0]}: [...], ...}}")
    if [name for name, _ in mine] != list(names):
        raise LangSegError(f"the model's label sets are for {', '.join(n for n, _ in mine)} but the data's datasets are "
                           f"{theirs}: give one label list per dataset, named and ordered as the datasets")
    for (name, count), classes in zip(mine, counts):
        if count != classes:
            raise LangSegError(f"the model has {count} labels for {name} but the dataset has {classes} classes: pass "
                               f"{classes} labels in {name}'s class order (or none for each dataset's own)")


def check_data_fits(module, datamodule) -> None:
    """Before anything runs or is written: the module's label sets have the datasets' class counts, and each
    dataset's crop size is a multiple of the ViT's patch size (otherwise MindSpore fails deep in a shape error)
    and, with one image a batch, large enough for BatchNorm to train."""
    hparams = getattr(datamodule, "hparams", {})
    datasets = opened_datasets(datamodule)
    crops = sorted({d.crop_size for pair in datasets for d in pair if getattr(d, "crop_size", None)})
    crops = crops or [c for c in (hparams.get("crop_size"),) if c is not None]
    patch = module.options.config.vit.patch_size
    batch = hparams.get("batch_size")
    options = getattr(module, "options", None)
    for crop in crops:
        if crop % patch:
            fit = max(patch, round(crop / patch) * patch)
            raise LangSegError(f"crop size {crop} is not a multiple of the patch size {patch} of the backbone: "
                               f"use e.g. {fit} (--crop_size / --data.crop_size)")
        if crop < 2 * patch and batch == 1 and (options is None or options.use_bn):
            raise LangSegError(f"crop size {crop} leaves one value per channel in the decoder's deepest map, and "
                               f"BatchNorm cannot train on that with batch size 1: use a crop size of {2 * patch} or "
                               f"more, or a batch size of 2 or more")
    counts = [getattr(pair[0], "num_class", None) for pair in datasets]  # train and val: the same reader
    if datasets and None not in counts:
        _check_label_sets(module, getattr(datamodule, "names", None) or [""] * len(counts), counts)
    if hasattr(datamodule, "check_batches"):
        datamodule.check_batches()  # several datasets: each holds a batch


def split_batch(batch):
    """``(images, target, source)``: a batch of several datasets' run carries its dataset's index (the same for
    all its items); one of a single dataset, ``(images, target)``, is dataset 0."""
    if len(batch) == 3:
        img, target, source = batch
        return img, target, int(source[0])
    img, target = batch
    return img, target, 0


def poly_lambda(max_epochs: int):
    """Upstream's schedule factor for epoch ``e``."""

    def factor(epoch: int) -> float:
        return pow(1.0 - epoch / max_epochs, POLY_POWER)

    return factor


class LSegmentationModule(pl.LightningModule):
    def __init__(self, base_lr: float = 0.004, batch_size: int = 1, max_epochs: int = 200,
                 weight_decay: float = 1e-4, momentum: float = 0.9, ignore_index: int = -1,
                 num_classes: Union[int, Mapping[str, int]] = 150, midasproto: bool = False):
        """``num_classes``: the label count, or ``{dataset name: label count}`` for several datasets in one run
        (in the data module's order; a batch's dataset index picks one)."""
        super().__init__()
        self.lr = base_lr / 16 * batch_size
        self.max_epochs = max_epochs
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.ignore_index = ignore_index
        self.num_classes = num_classes
        self.midasproto = midasproto
        # (name, label count) of each dataset; one dataset has no name: its metrics keep their plain names
        self.sources = list(num_classes.items()) if isinstance(num_classes, Mapping) else [("", num_classes)]
        self.train_pix_acc = torch.nn.ModuleList(
            MulticlassAccuracy(average="micro", num_classes=n, ignore_index=ignore_index) for _, n in self.sources)
        self.val_metrics = torch.nn.ModuleList(self.validation_metrics(n) for _, n in self.sources)

    def validation_metrics(self, num_classes: int) -> torch.nn.ModuleDict:
        """What validation computes for one dataset, by the name it is logged under (``metric_name``)."""
        metric = dict(num_classes=num_classes, ignore_index=self.ignore_index)
        # upstream's figures, through the implementation test_lseg.py --eval uses (#19)
        return torch.nn.ModuleDict({"val_loss": MeanMetric(), "segmentation": SegmentationMetric(**metric)})

    def metric_name(self, name: str, source: int) -> str:
        """``name`` for dataset ``source``: as it is with one dataset; with several ``name/<dataset>``
        (``mIoU/pascal_voc``), their mean logged under ``name``."""
        return name if len(self.sources) == 1 else f"{name}/{self.sources[source][0]}"

    def check_data(self, datamodule) -> None:
        """``check_data_fits`` once per data module: the commands call it before the Trainer writes its log
        folder; ``setup`` calls it for runs started from Python."""
        if getattr(self, "_data_checked", None) is not datamodule:
            self.data_fits(datamodule)
            self._data_checked = datamodule

    def data_fits(self, datamodule) -> None:
        """Stop with one line when the data does not fit the module (``check_data_fits``); a backend may add
        its own limits."""
        check_data_fits(self, datamodule)

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.datamodule is not None:
            self.check_data(self.trainer.datamodule)  # the data module's setup has run

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target, ignore_index=self.ignore_index)

    # -- what each backend implements ------------------------------------
    def train_forward(self, img: torch.Tensor, target: torch.Tensor, source: int = 0):
        """``(loss, pred)`` of one training micro-batch of dataset ``source`` (scored against its label set),
        ``pred`` each pixel's best label; its gradients are ready for ``backward``."""
        raise NotImplementedError

    def forward_eval(self, img: torch.Tensor, source: int = 0) -> torch.Tensor:
        """``(N, L, H, W)`` logits in eval mode, ``L`` the label count of dataset ``source``."""
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
        img, target, source = split_batch(batch)
        loss, pred = self.train_forward(img, target, source)
        accuracy = self.train_pix_acc[source]
        accuracy(pred, target)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)  # under DDP: the mean over processes
        self.log(self.metric_name("train_pix_acc", source), accuracy, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        img, target, source = split_batch(batch)
        out = self.forward_eval(img, source)
        pred = out.argmax(1)
        metrics = self.val_metrics[source]
        metrics["val_loss"].update(self.loss(out, target), img.shape[0])  # the mean over images
        metrics["segmentation"].update(pred, target)

    def on_validation_epoch_end(self):
        # computed over every process's share under DDP (torchmetrics syncs), so the same on each
        figures = {}
        for source, metrics in enumerate(self.val_metrics):
            if metrics["val_loss"].update_called:
                computed = metrics["segmentation"].compute()
                for name, value in (("val_loss", metrics["val_loss"].compute()), ("pix_acc", computed["pix_acc"]),
                                    ("mIoU", computed["miou"]), ("mIoU_present", computed["miou_present"])):
                    figures.setdefault(name, {})[self.metric_name(name, source)] = value.float()
            for metric in metrics.values():
                metric.reset()
        for name, values in figures.items():
            for logged, value in values.items():
                self.log(logged, value, prog_bar=logged == name and name != "mIoU_present", sync_dist=True)
            if len(self.sources) > 1:  # the datasets' mean: the progress bar's, and the best checkpoint's pix_acc
                self.log(name, torch.stack(list(values.values())).mean(), prog_bar=True, sync_dist=True)

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
