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
    def __init__(self, options: NetOptions, state: Dict[str, np.ndarray], lr: float, steps_per_epoch: int,
                 max_epochs: int, momentum: float = 0.9, weight_decay: float = 1e-4, accumulate: int = 1,
                 mode: Optional[str] = None):
        self.model = MindSporeModel(options, state=state, mode=mode, what="initial weights")
        self.step = TrainStep(self.model.net, lr, steps_per_epoch, max_epochs, momentum=momentum,
                              weight_decay=weight_decay, accumulate=accumulate, mode=self.model.mode)
        self.handoff_seconds = 0.0  # time spent crossing between frameworks

    def _in(self, images: torch.Tensor, target: Optional[torch.Tensor] = None):
        start = time.perf_counter()
        x = to_mindspore(images, np.float32)
        y = to_mindspore(target, np.int32) if target is not None else None  # MindSpore's CPU loss wants int32
        self.handoff_seconds += time.perf_counter() - start
        return x, y

    def _out(self, *tensors):
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
        self.model.net.set_train(False)
        x, _ = self._in(images)
        return self._out(self.model._compiled_forward(x, self.model.text_features(labels)))[0]

    def state_dict(self) -> Dict[str, np.ndarray]:
        return self.model.state_dict()

    def optimizer_state(self) -> Dict[str, np.ndarray]:
        """Momentum buffers, first-step flags, step counters and any pending gradient sums."""
        opt = self.step.optimizer
        state = {f"accum.{i}": p.asnumpy() for i, p in enumerate(opt.accum)}
        state.update({f"stat.{i}": p.asnumpy() for i, p in enumerate(opt.stat)})
        state["global_step"] = opt.global_step.asnumpy()
        state["micro_step"] = np.array(self.step.micro_step)
        if self.step.accumulate > 1:
            state.update({f"grad_sum.{i}": p.asnumpy() for i, p in enumerate(self.step.grad_sums)})
        return state

    def load_optimizer_state(self, state: Dict[str, np.ndarray]) -> None:
        import mindspore as ms

        opt = self.step.optimizer
        targets = {f"accum.{i}": p for i, p in enumerate(opt.accum)}
        targets.update({f"stat.{i}": p for i, p in enumerate(opt.stat)})
        targets["global_step"] = opt.global_step
        if self.step.accumulate > 1:
            targets.update({f"grad_sum.{i}": p for i, p in enumerate(self.step.grad_sums)})
        for key, param in targets.items():
            param.set_data(ms.Tensor(np.asarray(state[key]).reshape(param.shape)))
        self.step.micro_step = int(state["micro_step"])


class MindSporeOptimizer(torch.optim.Optimizer):
    """What Lightning sees of MindSpore's SGD.

    The update itself runs inside MindSpore's compiled step; ``step()`` only lets
    Lightning count it (``global_step``, ``max_steps``), and ``state_dict`` /
    ``load_state_dict`` carry MindSpore's optimizer state (momentum, step
    counters) through Lightning's own checkpoints.
    """

    def __init__(self, params, owner):
        super().__init__(params, defaults={})
        self._owner = owner  # the LightningModule, which holds the bridge

    def step(self, closure=None):
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True):
        pass

    def state_dict(self):
        bridge = self._owner.bridge
        if bridge is None:
            return {"mindspore": None}
        # torch tensors: Lightning reloads checkpoints with torch.load(weights_only=True)
        return {"mindspore": {k: torch.from_numpy(np.array(v)) for k, v in bridge.optimizer_state().items()}}

    def load_state_dict(self, state_dict):
        state = state_dict.get("mindspore")
        self._owner.restore_ms_optimizer({k: v.numpy() for k, v in state.items()} if state is not None else None)
