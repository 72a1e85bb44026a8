"""LSeg as a Lightning module: upstream's ``LSegModule``, trained on a fixed label set (or one a dataset, for
several datasets in one run), on either backend.

``LSegModule(..., backend="torch")`` trains the torch reference (this file);
``backend="mindspore"`` gives ``MindSporeLSegModule``: this class with the mixin
``lang_seg.modules.mindspore.backend.MindSporeBackend`` in front (MindSpore holds the weights), so a YAML
config or a checkpoint's hyper-parameters switch backends with one value, and a subclass of ``LSegModule``
runs on either backend too. The CLIP text tower is frozen (upstream leaves it out of the optimizer), so the
label set's text features are computed once, not every step as upstream does. Hyper-parameters are saved
under upstream's flag names, so checkpoints carry the network options (``lang_seg.load_model`` reads them).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import torch

from lang_seg.config import NetOptions, check_backend
from lang_seg.errors import LangSegError
from lang_seg.labels import ade20k_labels
from lang_seg.names import is_trained

from .lsegmentation_module import LSegmentationModule
from .models.lseg_net import LSegNet


def on_mindspore(cls: type) -> type:
    """``cls`` (``LSegModule`` or a subclass) with the MindSpore backend in front, made once per class."""
    from .mindspore.backend import MindSporeBackend

    if issubclass(cls, MindSporeBackend):
        return cls
    if cls not in _ON_MINDSPORE:
        name = "MindSporeLSegModule" if cls is LSegModule else f"MindSpore{cls.__name__}"
        _ON_MINDSPORE[cls] = type(name, (MindSporeBackend, cls), {"__module__": cls.__module__,
                                                                 "__qualname__": name})
    return _ON_MINDSPORE[cls]


_ON_MINDSPORE: dict = {}


def __getattr__(name: str):
    # ``MindSporeLSegModule`` by name (pickle, a config's class_path)
    if name == "MindSporeLSegModule":
        return on_mindspore(LSegModule)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class OnBackend(type(LSegmentationModule)):
    """``LSegModule(..., backend="mindspore")`` builds the class called with the MindSpore backend in front.
    (A metaclass, not ``__new__``: Lightning's CLI reads the constructor's signature from ``__init__``.)"""

    def __call__(cls, *args, **kwargs):
        if kwargs.get("backend") == "mindspore":
            cls = on_mindspore(cls)
        return super().__call__(*args, **kwargs)


class LSegModule(LSegmentationModule, metaclass=OnBackend):

    def __init__(self, backbone: str = "clip_vitl16_384", num_features: int = 256, readout: str = "project",
                 arch_option: int = 0, block_depth: int = 0, activation: str = "lrelu", use_bn: bool = True,
                 labels: Union[Sequence[str], Mapping[str, Sequence[str]], None] = None, pretrained: bool = True,
                 base_lr: float = 0.004,
                 batch_size: int = 1, max_epochs: int = 200, weight_decay: float = 1e-4, momentum: float = 0.9,
                 ignore_index: int = -1, backend: str = "torch", accumulate_grad_batches: int = 1,
                 ms_mode: Optional[str] = None, midasproto: bool = False):
        check_backend(backend)
        if isinstance(labels, Mapping):  # several datasets: {name: its labels}, in the data module's order
            labels = {str(name): list(names) for name, names in labels.items()}
            self.label_sets, classes = list(labels.values()), {name: len(names) for name, names in labels.items()}
        else:
            labels = list(labels) if labels is not None else ade20k_labels()
            self.label_sets, classes = [labels], len(labels)
        super().__init__(base_lr=base_lr, batch_size=batch_size, max_epochs=max_epochs, weight_decay=weight_decay,
                         momentum=momentum, ignore_index=ignore_index, num_classes=classes, midasproto=midasproto)
        self.save_hyperparameters()
        self.labels = labels
        self.backend = backend
        self.options = NetOptions(backbone=backbone, features=num_features, readout=readout, use_bn=use_bn,
                                  arch_option=arch_option, block_depth=block_depth, activation=activation)
        self.build_net(pretrained)

    def build_net(self, pretrained: bool) -> None:
        self.net = LSegNet(self.options, pretrained=pretrained)
        # what upstream's SGD never updates (the CLIP text tower, and what the forward never reaches: the ViT's
        # tail, scratch.refinenet4.resConfUnit1) is frozen, so DDP needs no find_unused_parameters
        for name, param in self.net.named_parameters():
            param.requires_grad_(is_trained(name, self.options))
        self._text_features: Dict[int, torch.Tensor] = {}  # a label set's, by dataset index

    def setup(self, stage: str) -> None:
        super().setup(stage)
        wanted, lightning = self.hparams.accumulate_grad_batches, self.trainer.accumulate_grad_batches
        if stage == "fit" and wanted != 1 and wanted != lightning:
            raise LangSegError(f"the module was built for accumulate_grad_batches={wanted} but the Trainer "
                               f"accumulates {lightning}: pass Trainer(accumulate_grad_batches={wanted}) (Lightning "
                               "accumulates on both backends)")

    def text_features(self, source: int = 0) -> torch.Tensor:
        """The text features of dataset ``source``'s label set, computed once (the text tower is frozen)."""
        cached = self._text_features.get(source)
        if cached is None or cached.device != self.device:
            with torch.no_grad():
                cached = self._text_features[source] = self.net.encode_text(self.label_sets[source])
        return cached

    def forward(self, x: torch.Tensor, source: int = 0) -> torch.Tensor:
        return self.net(x, self.text_features(source))

    def train_forward(self, img, target, source=0):
        out = self(img, source)
        return self.loss(out, target), out.argmax(1)

    def forward_eval(self, img, source=0):
        return self(img, source)

    def parameter_groups(self):
        return list(self.net.pretrained.parameters()), list(self.net.scratch.parameters())

    def make_optimizer(self, kind, groups, **hyper):
        return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[kind](groups, **hyper)
