"""The bridge between the Lightning shell (torch tensors) and the MindSpore compute core.

Batches cross without a copy on CPU (``mindspore.Tensor.from_numpy`` over the
torch tensor's memory); loss and predictions come back the same way. The
MindSpore network holds the live weights while training; ``state_dict`` gives
them under torch names for Lightning's checkpoints.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from .backends.mindspore_backend import MindSporeModel
from .backends.mindspore_train import TrainStep
from .config import NetOptions


def to_mindspore(t: torch.Tensor, dtype=None):
    import mindspore as ms

    array = t.detach().cpu().numpy()
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    return ms.Tensor.from_numpy(np.ascontiguousarray(array))


def to_torch(t) -> torch.Tensor:
    return torch.from_numpy(t.asnumpy())


class MindSporeBridge:
    """The MindSpore network behind a Lightning module: eval at once, training after ``setup_training``."""

    def __init__(self, options: NetOptions, state: Dict[str, np.ndarray], mode: Optional[str] = None):
        self.model = MindSporeModel(options, state=state, mode=mode, what="initial weights")
        self.step: Optional[TrainStep] = None
        self.handoff_seconds = 0.0  # time spent crossing between frameworks

    def setup_training(self, lr: float, steps_per_epoch: int, max_epochs: int, momentum: float = 0.9,
                       weight_decay: float = 1e-4, accumulate: int = 1) -> None:
        """Build the compiled training step (SGD state starts fresh; see ``load_optimizer_state``)."""
        self.step = TrainStep(self.model.net, lr, steps_per_epoch, max_epochs, momentum=momentum,
                              weight_decay=weight_decay, accumulate=accumulate, mode=self.model.mode)

    def _in(self, images: torch.Tensor, target: Optional[torch.Tensor] = None):
        start = time.perf_counter()
        x = to_mindspore(images, np.float32)
        y = to_mindspore(target, np.int32) if target is not None else None  # MindSpore's CPU loss wants int32
        self.handoff_seconds += time.perf_counter() - start
        return x, y

    def _out(self, *tensors):
        import mindspore as ms

        ms.runtime.synchronize()  # the step runs asynchronously: wait for it, so it is not counted as hand-off
        start = time.perf_counter()
        result = tuple(to_torch(t) for t in tensors)
        self.handoff_seconds += time.perf_counter() - start
        return result

    def train_batch(self, images: torch.Tensor, target: torch.Tensor, labels: Sequence[str]):
        """One micro-batch of training: ``(loss, out, stepped)`` with loss and out as torch tensors."""
        x, y = self._in(images, target)
        loss, out, stepped = self.step(x, y, self.model.text_features(labels))
        loss_t, out_t = self._out(loss, out)
        return loss_t, out_t, stepped

    def eval_batch(self, images: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
        x, _ = self._in(images)
        return self._out(self.model.forward_tensor(x, self.model.text_features(labels)))[0]

    def state_dict(self) -> Dict[str, np.ndarray]:
        return self.model.state_dict()

    def optimizer_state(self) -> Dict[str, np.ndarray]:
        """Momentum buffers, first-step flags, step counters and any pending gradient sums, by parameter name."""
        state = {key: p.asnumpy() for key, p in self.step.optimizer_slots().items()}
        state["global_step"] = self.step.optimizer.global_step.asnumpy()
        state["micro_step"] = np.array(self.step.micro_step)
        return state

    def load_optimizer_state(self, state: Dict[str, np.ndarray]) -> None:
        """Restore ``optimizer_state()``'s dict; tensors it lacks start fresh (no momentum yet)."""
        import mindspore as ms

        for key, param in self.step.optimizer_slots().items():
            fresh_default = 1.0 if key.startswith("fresh.") else 0.0
            value = state[key] if key in state else np.full(param.shape, fresh_default, np.float32)
            param.set_data(ms.Tensor(np.asarray(value, np.float32).reshape(param.shape)))
        self.step.optimizer.global_step.set_data(
            ms.Tensor(np.asarray(state["global_step"]).reshape(self.step.optimizer.global_step.shape).astype(np.int32)))
        self.step.micro_step = int(state.get("micro_step", 0))
