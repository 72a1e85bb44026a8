"""LSeg as a Lightning module: upstream's ``LSegModule``, trained on a fixed label set.

The CLIP text tower is frozen (upstream leaves it out of the optimizer), so the
label set's text features are computed once, not every step as upstream does.
This module trains the torch reference; hyper-parameters are saved under
upstream's flag names, so its checkpoints carry the network options
(``lang_seg.load_model`` reads them).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from lang_seg.config import NetOptions, check_backend
from lang_seg.labels import ade20k_labels
from lang_seg.names import is_trained

from .lsegmentation_module import LSegmentationModule
from .models.lseg_net import LSegNet
from .optimizer_state import is_mindspore_state, mindspore_from_torch, move_step_counter, torch_from_mindspore
from .trainer import check_mindspore_trainer


class LSegModule(LSegmentationModule):
    def __init__(self, backbone: str = "clip_vitl16_384", num_features: int = 256, readout: str = "project",
                 arch_option: int = 0, block_depth: int = 0, activation: str = "lrelu", use_bn: bool = True,
                 labels: Optional[Sequence[str]] = None, pretrained: bool = True, base_lr: float = 0.004,
                 batch_size: int = 1, max_epochs: int = 200, weight_decay: float = 1e-4, momentum: float = 0.9,
                 ignore_index: int = -1, backend: str = "torch", accumulate_grad_batches: int = 1,
                 ms_mode: Optional[str] = None):
        check_backend(backend)
        labels = list(labels) if labels is not None else ade20k_labels()
        super().__init__(base_lr=base_lr, batch_size=batch_size, max_epochs=max_epochs, weight_decay=weight_decay,
                         momentum=momentum, ignore_index=ignore_index, num_classes=len(labels))
        self.save_hyperparameters()
        self.labels = labels
        self.options = NetOptions(backbone=backbone, features=num_features, readout=readout, use_bn=use_bn,
                                  arch_option=arch_option, block_depth=block_depth, activation=activation)
        self.net = LSegNet(self.options, pretrained=pretrained)
        # what upstream's SGD never updates (the CLIP text tower, and what the forward never reaches: the ViT's
        # tail, scratch.refinenet4.resConfUnit1) is frozen, so DDP needs no find_unused_parameters
        for name, param in self.net.named_parameters():
            param.requires_grad_(is_trained(name, self.options))
        self._text_features: Optional[torch.Tensor] = None
        self.backend = backend
        # MindSpore runs forward, loss, backward and the SGD step itself: Lightning only drives the loop
        self.automatic_optimization = backend == "torch"
        self.bridge = None
        self._pending_ms_optimizer = None
        self._last_in_epoch = False

    def text_features(self) -> torch.Tensor:
        if self._text_features is None or self._text_features.device != self.device:
            with torch.no_grad():
                self._text_features = self.net.encode_text(self.labels)
        return self._text_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.text_features())

    # -- MindSpore backend: the bridge -------------------------------------
    def _build_bridge(self):
        from lang_seg.modules.bridge import MindSporeBridge

        state = {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        # on the device Lightning chose for this process (cpu, or cuda:<local rank>)
        self.bridge = MindSporeBridge(self.options, state, mode=self.hparams.ms_mode, device=self.device)

    def _setup_bridge_training(self):
        h = self.hparams
        if self.bridge is None:
            self._build_bridge()
        # the schedule follows Lightning's epoch (set_epoch), as torch's LambdaLR stepped per epoch does,
        # whatever the number of processes (and so of steps per epoch) a run resumes with
        self.bridge.setup_training(self.lr, None, h.max_epochs, momentum=h.momentum,
                                   weight_decay=h.weight_decay, accumulate=h.accumulate_grad_batches)
        if self._pending_ms_optimizer is not None:
            self.bridge.load_optimizer_state(self._pending_ms_optimizer)
            self._pending_ms_optimizer = None
        self.optimizers().optimizer.follow_mindspore()

    def restore_ms_optimizer(self, state) -> None:
        if state is None:
            return
        if self.bridge is not None and self.bridge.step is not None:
            self.bridge.load_optimizer_state(state)
            self.optimizers().optimizer.follow_mindspore()
        else:
            self._pending_ms_optimizer = state

    def setup(self, stage: str) -> None:
        super().setup(stage)  # the label count and crop size against the data
        if self.backend == "mindspore":
            check_mindspore_trainer(self.trainer)

    def on_train_start(self):
        if self.backend == "mindspore":
            self._setup_bridge_training()

    def on_train_epoch_start(self):
        if self.backend == "mindspore":
            self.bridge.step.set_epoch(self.current_epoch)
            self.optimizers().optimizer.follow_mindspore()

    def on_train_batch_start(self, batch, batch_idx):
        # Lightning's loop steps torch's optimizer after every `accumulate` micro-batches and at an epoch's
        # last one; the MindSpore step follows the same rule
        self._last_in_epoch = batch_idx + 1 >= self.trainer.num_training_batches

    def on_validation_start(self):
        if self.backend == "mindspore" and self.bridge is None:
            self._build_bridge()

    def on_fit_end(self):
        self.sync_weights_from_bridge()

    def configure_optimizers(self):
        if self.backend == "mindspore":
            from .mindspore_optimizer import SGD

            # MindSpore's SGD runs inside the bridge; Lightning counts its steps and saves its state
            return SGD(self.parameter_groups(), self, momentum=self.momentum, weight_decay=self.weight_decay)
        return super().configure_optimizers()

    def train_forward(self, img, target):
        if self.backend == "torch":
            return super().train_forward(img, target)
        loss, out, stepped = self.bridge.train_batch(img, target, self.labels, last=self._last_in_epoch)
        if stepped:
            self.optimizers().step()  # the update already ran in MindSpore: Lightning counts it
        return loss, out

    def forward_eval(self, img):
        if self.backend == "mindspore" and self.bridge is not None:
            return self.bridge.eval_batch(img, self.labels)
        return self(img)

    def sync_weights_from_bridge(self):
        """Copy MindSpore's live weights into the torch network (what Lightning saves)."""
        if self.bridge is not None:
            state = self.bridge.state_dict()
            self.net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})

    def optimizer_parameter_names(self):
        """Torch names (``net.`` left out) of the optimizer's parameters, in its index order."""
        names = {id(p): n for n, p in self.net.named_parameters()}
        return [names[id(p)] for group in self.parameter_groups() for p in group["params"]]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume on either backend: convert the other backend's optimizer state (momentum, schedule)."""
        self.bridge = None  # rebuilt from the restored weights when next needed
        saved = (checkpoint.get("optimizer_states") or [None])[0]
        if saved is None:
            return
        names = self.optimizer_parameter_names()
        if self.backend == "mindspore" and not is_mindspore_state(saved):
            state = mindspore_from_torch(saved, names, checkpoint.get("global_step", 0))
            checkpoint["optimizer_states"] = [{"mindspore": {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}}]
            checkpoint["lr_schedulers"] = []
            move_step_counter(checkpoint, to_manual=True)
        elif self.backend == "torch" and is_mindspore_state(saved):
            [optimizer], [scheduler] = LSegmentationModule.configure_optimizers(self)
            progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
            epochs_done = progress.get("current", {}).get("processed", 0)
            state = {k: v.numpy() for k, v in (saved["mindspore"] or {}).items()}
            opt_state, sched_state = torch_from_mindspore(state, optimizer, scheduler, names, epochs_done)
            checkpoint["optimizer_states"] = [opt_state]
            checkpoint["lr_schedulers"] = [sched_state]
            move_step_counter(checkpoint, to_manual=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.bridge is not None:
            self.sync_weights_from_bridge()
            checkpoint["state_dict"] = self.state_dict()
