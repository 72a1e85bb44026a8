"""Zero-shot LSeg as a Lightning module: upstream's ``LSegModuleZS`` recipe, on either backend.

Trained on a fold's training classes of a few-shot benchmark (``lang_seg.data.fewshot.datamodule``), each
image is scored on its own episode's label pair ``["others", class]`` (upstream's ``net(x, class_info)``):
the batch's text features are ``(N, 2, C)``, one pair an image, and the networks' cosine head takes them
as they are (``LSegNet.cosine_logits``). The recipe is LSegModule's (``LSegmentationModule``: learning rate
``base_lr / 16 * batch_size``, the backbone and 10x decoder groups, SGD or ``--midasproto``'s Adam, the
poly schedule, cross-entropy over both labels); what differs is the batch, upstream's:

- training: a batch of B episodes is 2B images, the supports (one an episode) then the queries, each
  scored on its episode's class; logged: ``train_loss``, and per epoch upstream's ``fewshot_trn_miou``,
  ``fewshot_trn_fb_iou`` over the fold's training classes;
- validation: the queries of the fold's tested classes; logged: ``val_loss`` and upstream's
  ``fewshot_val_miou``, ``fewshot_val_fb_iou`` (``lang_seg.fewshot``: HSNet's ``AverageMeter``, summed over
  DDP processes), the best checkpoint's measure.

``LSegModuleZS(..., backend="mindspore")`` builds ``MindSporeLSegModuleZS``: this class behind
``MindSporeEpisodes`` (its episodes' text from MindSpore's text tower) and the MindSpore backend's mixin
(``lang_seg.modules.mindspore.backend``: weights, optimizer, bridge, unchanged). Checkpoints are
LSegModule's: ``net.*`` under upstream's names, the options in the hyper-parameters with
``zero_shot=True``, so ``lang_seg.load_model`` and ``test_lseg_zs.py`` read them back.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torchmetrics import MeanMetric, Metric

from lang_seg.errors import LangSegError
from lang_seg.fewshot import (BACKGROUND, BENCHMARKS, FewShotMetric, check_benchmark, check_fold, classify_prediction,
                              fold_classes)
from lang_seg.names import is_trained

from .lseg_module import LSegModule, OnBackend
from .models.lseg_net_zs import build_net


class FewShotAreas(Metric):
    """Upstream's ``AverageMeter`` as a torchmetrics ``Metric``: background and foreground intersection and union
    summed per class (across DDP processes too); ``compute(class_ids)`` gives ``(mIoU, FB-IoU)`` in percent over
    those classes, through ``lang_seg.fewshot.FewShotMetric``."""

    full_state_update = False

    def __init__(self, benchmark: str):
        super().__init__()
        self.benchmark = benchmark
        classes = BENCHMARKS[benchmark].classes
        self.add_state("intersection", torch.zeros(2, classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("union", torch.zeros(2, classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction, target, class_ids, ignore=None) -> None:
        inter, union = classify_prediction(prediction.cpu().numpy(), target.cpu().numpy(),
                                           None if ignore is None else ignore.cpu().numpy())
        ids = class_ids.to(self.intersection.device).long()
        self.intersection.index_add_(1, ids, torch.from_numpy(inter).to(self.intersection))
        self.union.index_add_(1, ids, torch.from_numpy(union).to(self.union))

    def compute(self, class_ids=None):
        metric = FewShotMetric(self.benchmark, class_ids)
        metric.intersection = self.intersection.cpu().numpy()
        metric.union = self.union.cpu().numpy()
        return metric.miou(), metric.fb_iou()


def on_mindspore_zs(cls: type) -> type:
    """``cls`` with the zero-shot MindSpore parts and the MindSpore backend in front, made once per class."""
    from .mindspore.backend import MindSporeBackend

    if issubclass(cls, MindSporeBackend):
        return cls
    if cls not in _ON_MINDSPORE:
        name = f"MindSpore{cls.__name__}"
        _ON_MINDSPORE[cls] = type(name, (MindSporeEpisodes, MindSporeBackend, cls),
                                  {"__module__": cls.__module__, "__qualname__": name})
    return _ON_MINDSPORE[cls]


_ON_MINDSPORE: dict = {}


def __getattr__(name: str):
    if name == "MindSporeLSegModuleZS":  # by name (pickle, a config's class_path)
        return on_mindspore_zs(LSegModuleZS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class OnBackendZS(OnBackend):
    """As ``OnBackend``, with the zero-shot MindSpore parts (``MindSporeEpisodes``) before the backend's."""

    def __call__(cls, *args, **kwargs):
        if kwargs.get("backend") == "mindspore":
            cls = on_mindspore_zs(cls)
        return OnBackend.__call__(cls, *args, **kwargs)


class LSegModuleZS(LSegModule, metaclass=OnBackendZS):
    """``dataset``: the benchmark (pascal, coco, fss), as upstream's flag; ``fold``: 0..3."""

    def __init__(self, dataset: str = "fss", fold: int = 0, backbone: str = "clip_vitl16_384", num_features: int = 256,
                 pretrained: bool = True, base_lr: float = 0.004, batch_size: int = 4, max_epochs: int = 200,
                 weight_decay: float = 1e-4, momentum: float = 0.9, backend: str = "torch",
                 accumulate_grad_batches: int = 1, ms_mode: Optional[str] = None, midasproto: bool = False,
                 zero_shot: bool = True):
        check_benchmark(dataset)
        check_fold(fold)
        if zero_shot is not True:
            raise LangSegError("LSegModuleZS trains upstream's zero-shot networks: zero_shot is True (a hyper-parameter "
                               "saved for lang_seg.load_model); train LSegNet with train_lseg.py")
        # the zero-shot nets have BatchNorm and no head block; the label set is upstream's ['others', ''],
        # its second label each image's own class
        super().__init__(backbone=backbone, num_features=num_features, use_bn=True, arch_option=0,
                         labels=[BACKGROUND, ""], pretrained=pretrained, base_lr=base_lr, batch_size=batch_size,
                         max_epochs=max_epochs, weight_decay=weight_decay, momentum=momentum, backend=backend,
                         accumulate_grad_batches=accumulate_grad_batches, ms_mode=ms_mode, midasproto=midasproto)
        self.benchmark = dataset
        self.class_names = _class_names(dataset)
        self.train_areas, self.val_areas = FewShotAreas(dataset), FewShotAreas(dataset)
        self.val_loss = MeanMetric()

    # -- the network and its episodes' text (torch; MindSporeEpisodes for MindSpore) --------------------
    def build_net(self, pretrained: bool) -> None:
        self.options = replace(self.options, zero_shot=True)
        self.net = build_net(self.options, pretrained=pretrained)
        for name, param in self.net.named_parameters():  # as LSegModule: what upstream's SGD never updates is frozen
            param.requires_grad_(is_trained(name, self.options))
        self._text_rows: dict = {}

    def episode_text(self, class_ids: torch.Tensor) -> torch.Tensor:
        """``(N, 2, C)`` text features: image i's pair ``["others", class_ids[i]]``."""
        def encode(names):
            with torch.no_grad():
                return list(self.net.encode_text(names))

        background, rows = episode_rows(self._text_rows, self.class_names, class_ids, encode)
        return torch.stack([torch.stack([background, row]) for row in rows]).to(self.device)

    def forward(self, x: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.episode_text(class_ids))

    def train_forward(self, img, target, class_ids):
        out = self(img, class_ids)
        return self.loss(out, target), out.argmax(1)

    def forward_eval(self, img, class_ids):
        return self(img, class_ids)

    # -- the recipe ------------------------------------------------------------------------------------
    def check_data(self, datamodule) -> None:
        """The pictures' side is a multiple of the backbone's patch size (or the ResNet's stride)."""
        size, patch = getattr(datamodule, "hparams", {}).get("img_size"), self.options.config.patch_size
        if size is not None and size % patch:
            raise LangSegError(f"picture size {size} is not a multiple of {patch}, the patch size (or stride) of "
                               f"{self.options.backbone}: use e.g. {max(patch, round(size / patch) * patch)} (--img_size)")

    def _class_ids(self, split: str):
        """The classes the figures average over: the opened split's (FSS-1000: the categories present),
        else the fold's."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        dataset = getattr(datamodule, "trainset" if split == "trn" else "valset", None)
        return dataset.class_ids if dataset is not None else fold_classes(self.benchmark, self.hparams.fold, split)

    def training_step(self, batch, batch_idx):
        img, target, ignore, class_ids = episode_batch(batch, training=True)
        loss, pred = self.train_forward(img, target, class_ids)
        self.train_areas.update(pred, target, class_ids, ignore)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)
        return loss

    def on_train_epoch_end(self):
        miou, fb_iou = self.train_areas.compute(self._class_ids("trn"))
        self.log("fewshot_trn_miou", miou, sync_dist=True)
        self.log("fewshot_trn_fb_iou", fb_iou, sync_dist=True)
        self.train_areas.reset()

    def validation_step(self, batch, batch_idx):
        img, target, ignore, class_ids = episode_batch(batch, training=False)
        out = self.forward_eval(img, class_ids)
        self.val_loss.update(self.loss(out, target), img.shape[0])
        self.val_areas.update(out.argmax(1), target, class_ids, ignore)

    def on_validation_epoch_end(self):
        miou, fb_iou = self.val_areas.compute(self._class_ids("val"))
        self.log("val_loss", self.val_loss.compute(), prog_bar=True, sync_dist=True)
        self.log("fewshot_val_miou", miou, prog_bar=True, sync_dist=True)
        self.log("fewshot_val_fb_iou", fb_iou, sync_dist=True)
        self.val_loss.reset()
        self.val_areas.reset()


class MindSporeEpisodes:
    """The zero-shot module's backend parts on MindSpore: the episodes' text from MindSpore's text tower, handed
    to the bridge as per-image text features. Placed before ``MindSporeBackend`` in the class's bases."""

    def build_net(self, pretrained: bool) -> None:
        self.options = replace(self.options, zero_shot=True)
        super().build_net(pretrained)  # MindSporeBackend's: the torch reference's initial weights
        self._text_rows = {}

    def episode_text(self, class_ids):
        from mindspore import ops

        def encode(names):
            features = self.bridge.model.text_features(names)
            return [features[i] for i in range(len(names))]

        background, rows = episode_rows(self._text_rows, self.class_names, class_ids, encode)
        return ops.stack([ops.stack([background, row]) for row in rows])

    def forward(self, x, class_ids):
        self.configure_model()
        return self.bridge.eval_batch(x, self.episode_text(class_ids))

    def forward_eval(self, img, class_ids):
        return self(img, class_ids)

    def train_forward(self, img, target, class_ids):
        return self.bridge.train_batch(img, target, self.episode_text(class_ids),
                                       scale=1.0 / self.trainer.accumulate_grad_batches, weight_decay=self.weight_decay)


def _class_names(benchmark: str):
    from lang_seg.data.fewshot.common import read_labels

    return read_labels(benchmark)


def episode_rows(cache: dict, class_names, class_ids, encode):
    """``(background, [row of class_ids[i]])``: text features of ``"others"`` and of each image's class, from
    ``cache`` (class id -> row; None: the background), the missing ones encoded together in one call."""
    ids = [int(c) for c in class_ids]
    missing = [k for k in [None, *dict.fromkeys(ids)] if k not in cache]
    if missing:
        cache.update(zip(missing, encode([BACKGROUND if k is None else class_names[k] for k in missing])))
    return cache[None], [cache[c] for c in ids]


def episode_batch(batch: dict, training: bool):
    """``(images, target, ignore, class_ids)`` of a batch of episodes, as upstream's ``LSegmentationModuleZS``
    forms them: training takes the supports (the first of each episode) then the queries, each with the
    episode's class; validation the queries. ``target`` 0/1 long, ``ignore`` 1 on PASCAL's boundaries."""
    img, target, ignore = batch["query_img"], batch["query_mask"], batch["query_ignore_idx"]
    class_ids = torch.as_tensor(batch["class_id"])
    if training:
        img = torch.cat([batch["support_imgs"][:, 0], img])
        target = torch.cat([batch["support_masks"][:, 0], target])
        ignore = torch.cat([batch["support_ignore_idxs"][:, 0], ignore])
        class_ids = torch.cat([class_ids, class_ids])
    return img, target.long(), ignore, class_ids
