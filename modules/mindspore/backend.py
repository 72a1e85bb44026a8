"""``LSegModule`` on the MindSpore backend: the same recipe, with MindSpore holding the only copy of the weights.

``MindSporeBackend`` is a mixin over ``LSegModule`` (or a subclass of it): ``LSegModule(backend="mindspore")``
builds ``MindSporeLSegModule``, the two combined (``lang_seg.modules.lseg_module``), so it is an
``LSegModule`` in every respect but where its weights live.

``pl_module.net`` is the MindSpore ``LSegNet`` (an ``nn.Cell`` under the torch reference's attribute
paths, ``net.scratch.head1.weight``, ...): what a callback reads there is current at every step.
``state_dict()`` / ``load_state_dict()`` give and take those weights under the torch reference's names,
so Lightning's checkpoints are the torch backend's, key for key, and resume on either backend.
Lightning drives training as for torch (``lang_seg.modules.mindspore.optimizers``): ``training_step`` runs
MindSpore's compiled forward and backward, ``backward`` adds its gradients to the update's, the optimizer's
``step`` applies MindSpore's update. The network is built on the device Lightning chooses
(``configure_model``); before that the initial weights wait as arrays.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_info

from lang_seg.errors import LangSegError

from ..lsegmentation_module import opened_datasets
from ..trainer import check_mindspore_trainer
from . import optimizers
from .bridge import MindSporeBridge

PREFIX = "net."
# Several datasets in one run: MindSpore compiles its training graph (and its evaluation graph) once per input
# shape, and a label set's size is part of the shape, so each distinct (crop size, label count) of a run's
# datasets adds graphs a process keeps for its life (docs/datasets.md: their compile time and memory).
MAX_GRAPH_SHAPES = 4


def graph_shapes(module, datamodule) -> list:
    """The distinct ``(crop size, label count)`` of the run's datasets, in their order."""
    shapes = []
    for pair, (_, count) in zip(opened_datasets(datamodule), module.sources):
        shape = (getattr(pair[0], "crop_size", None), count)
        if shape not in shapes:
            shapes.append(shape)
    return shapes


class MindSporeBackend:
    """Overrides ``LSegModule``'s backend parts; placed before it in the class's bases."""

    def build_net(self, pretrained: bool) -> None:
        # the torch reference's initial weights (random from torch's seed, or CLIP/timm's), so that one seed
        # starts both backends from the same numbers; its parameter order is the optimizer's
        from ..models.lseg_net_zs import net_class  # LSegNet, or a zero-shot net (lang_seg.modules.lseg_module_zs)

        reference = net_class(self.options)(self.options, pretrained=pretrained)
        self.torch_shapes = {part: [(f"{part}.{n}", tuple(p.shape)) for n, p in getattr(reference, part).named_parameters()]
                             for part in ("pretrained", "scratch")}
        self._waiting: Optional[Dict[str, np.ndarray]] = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
        self.bridge: Optional[MindSporeBridge] = None

    @property
    def net(self):
        if self.bridge is None:
            raise LangSegError("the MindSpore network is built when Lightning sets the module up on its device "
                               "(configure_model); until then read the weights with state_dict()")
        return self.bridge.net

    def configure_model(self) -> None:
        if self.bridge is None:
            device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
            self.bridge = MindSporeBridge(self.options, self._waiting, mode=self.hparams.ms_mode, device=device)
            self._waiting = None
            total, trained = self.bridge.parameter_counts()
            rank_zero_info(f"MindSpore LSegNet ({self.options.backbone}) on {device}, {self.bridge.model.mode} mode: "
                           f"{total / 1e6:.1f}M parameters, {trained / 1e6:.1f}M trained")

    def setup(self, stage: str) -> None:
        super().setup(stage)  # the label count and crop size against the data
        check_mindspore_trainer(self.trainer)

    def data_fits(self, datamodule) -> None:
        super().data_fits(datamodule)
        shapes = graph_shapes(self, datamodule)
        listed = ", ".join(f"{count} labels at {crop}" for crop, count in shapes)
        if len(shapes) > MAX_GRAPH_SHAPES:
            raise LangSegError(f"the MindSpore backend compiles graphs for each label count and crop size of the "
                               f"datasets, and keeps them: {len(shapes)} here ({listed}), at most {MAX_GRAPH_SHAPES} "
                               f"a run; train fewer datasets together, give them one crop size (--crop_size), or use "
                               f"--backend torch")
        if len(shapes) > 1:
            rank_zero_info(f"MindSpore compiles a training and an evaluation graph for each of {len(shapes)} dataset "
                           f"shapes ({listed}) on its first batch, and keeps them (docs/datasets.md)")

    # -- weights: one copy, MindSpore's -----------------------------------
    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = self.bridge.state_dict() if self.bridge is not None else self._waiting
        out = OrderedDict() if destination is None else destination
        for key, value in state.items():
            out[prefix + PREFIX + key] = torch.from_numpy(np.asarray(value))
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        state = {k[len(PREFIX):]: v.detach().cpu().numpy() for k, v in state_dict.items() if k.startswith(PREFIX)}
        unexpected = [k for k in state_dict if not k.startswith(PREFIX)]
        if strict and unexpected:
            raise LangSegError(f"unexpected key {unexpected[0]} in the checkpoint's state_dict: LSeg's weights are "
                               f"all under '{PREFIX}'")
        if self.bridge is None:
            from lang_seg.names import match_state

            match_state({k: v.shape for k, v in self._waiting.items()}, state, "checkpoint")
            self._waiting = {k: state[k] for k in self._waiting}
        else:
            self.bridge.load_state_dict(state)
        return torch.nn.modules.module._IncompatibleKeys([], [])

    # -- the recipe's backend parts -----------------------------------------
    def forward(self, x: torch.Tensor, source: int = 0) -> torch.Tensor:
        self.configure_model()
        return self.bridge.eval_batch(x, self.label_sets[source])

    def forward_eval(self, img, source=0):
        return self(img, source)

    def train_forward(self, img, target, source=0):
        return self.bridge.train_batch(img, target, self.label_sets[source],
                                       scale=1.0 / self.trainer.accumulate_grad_batches, weight_decay=self.weight_decay)

    def backward(self, loss, *args, **kwargs) -> None:
        # MindSpore computed the gradients with the loss (its value_and_grad); here they join the update's
        self.bridge.accumulate()

    def parameter_groups(self):
        return (optimizers.placeholders(self.torch_shapes["pretrained"]),
                optimizers.placeholders(self.torch_shapes["scratch"]))

    def make_optimizer(self, kind, groups, **hyper):
        shapes = self.torch_shapes["pretrained"] + self.torch_shapes["scratch"]
        cls = {"sgd": optimizers.SGD, "adam": optimizers.Adam}[kind]
        return cls(groups, self.bridge, shapes, self.options, **hyper)
