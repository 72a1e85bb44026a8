"""The bridge between the Lightning shell (torch tensors) and the MindSpore compute core.

The MindSpore network holds the only copy of the weights; the bridge runs it on
the device Lightning chose for the process (``cpu``, or ``cuda:<local rank>`` ->
MindSpore ``GPU:<local rank>``), hands batches in and loss and predictions out
(``handoff``: shared memory on CPU), and keeps the gradients of
the update in progress, as torch keeps ``.grad``:

- ``train_batch``: MindSpore's compiled forward and backward on one micro-batch;
- ``accumulate``: that micro-batch's gradients join the update's (Lightning's ``backward``);
- ``step``: the update (``lang_seg.backends.mindspore_train``'s SGD or Adam), after averaging the gradients
  over the processes of a ``torch.distributed`` group (Lightning's DDP) in one ``all_reduce`` of one flat
  vector; BatchNorm's running statistics then come from rank 0 (one ``broadcast``), as torch's
  ``DistributedDataParallel`` does with its default ``broadcast_buffers``.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from lang_seg.backends.mindspore_backend import MindSporeModel, assign, named_parameters
from lang_seg.backends.mindspore_train import Adam, LossAndGrad, SGD
from lang_seg.config import NetOptions

from .handoff import Handoff

OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def mindspore_device(device: torch.device) -> str:
    """The MindSpore device for a torch one: ``cpu``, or ``gpu:<index>`` for ``cuda:<index>``."""
    device = torch.device(device)
    return "cpu" if device.type == "cpu" else f"gpu:{device.index or 0}"


def process_group_size() -> int:
    """Processes in the default ``torch.distributed`` group (1 when none is set up)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def batchnorm_statistics(net) -> list:
    """BatchNorm's running statistics (MindSpore Parameters), in the net's order."""
    return [p for name, p in named_parameters(net) if name.endswith((".moving_mean", ".moving_variance"))]


def flatten(tensors):
    """Torch tensors as one vector (a copy), and how to cut a vector of that layout back into views."""
    shapes = [t.shape for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors])

    def parts(vector):
        return [v.view(shape) for v, shape in zip(vector.split([s.numel() for s in shapes]), shapes)]

    return flat, parts


class MindSporeBridge:
    """The MindSpore network behind a Lightning module: evaluation at once, training after
    ``setup_optimizer``."""

    def __init__(self, options: NetOptions, state: Dict[str, np.ndarray], mode: Optional[str] = None,
                 device: torch.device = torch.device("cpu")):
        self.model = MindSporeModel(options, device=mindspore_device(device), state=state, mode=mode,
                                    what="initial weights")
        self.handoff = Handoff(device)
        self.loss_and_grad: Optional[LossAndGrad] = None
        self.optimizer = None
        self.grads: Optional[list] = None  # the update in progress: summed gradients (MindSpore tensors)
        self._pending: Optional[tuple] = None  # the last micro-batch's gradients, until ``accumulate``
        self.all_reduce_seconds = 0.0  # time spent averaging gradients across processes

    @property
    def net(self):
        """The MindSpore ``LSegNet`` (``nn.Cell``): the live weights, under the torch reference's attribute paths."""
        return self.model.net

    def parameter_counts(self):
        """``(all, trained)`` parameter counts of the network (what Lightning's model summary shows for torch)."""
        from lang_seg.backends.mindspore_train import trainable_parameters

        sizes = lambda params: sum(int(np.prod(p.shape)) for p in params)  # noqa: E731
        return sizes(p for _, p in named_parameters(self.net)), sizes(trainable_parameters(self.net))

    @property
    def handoff_seconds(self) -> float:
        """Time spent crossing between frameworks."""
        return self.handoff.seconds

    def setup_optimizer(self, kind: str = "sgd", **options) -> None:
        """Compile-on-first-use loss and gradients, and the update rule (``sgd``: ``momentum``; ``adam``:
        ``betas``, ``eps``), its state fresh (``load_optimizer_state`` restores one)."""
        if self.loss_and_grad is None:
            self.loss_and_grad = LossAndGrad(self.net, mode=self.model.mode)
        self.optimizer = OPTIMIZERS[kind](self.loss_and_grad.params, self.loss_and_grad.names, **options)
        self.grads = self._pending = None

    def _in(self, images: torch.Tensor, target: Optional[torch.Tensor] = None):
        x = self.handoff.to_mindspore(images, np.float32)
        y = self.handoff.to_mindspore(target, np.int32) if target is not None else None  # the CPU loss wants int32
        return x, y

    def train_batch(self, images: torch.Tensor, target: torch.Tensor, labels: Sequence[str], scale: float = 1.0,
                    weight_decay: float = 0.0):
        """Forward and backward of one micro-batch scored on ``labels`` (``text_features``): ``(loss, pred)``,
        torch tensors the caller owns. Its
        gradients (of ``scale * loss``) wait for ``accumulate``; the first micro-batch of an update carries
        ``weight_decay * w`` too (torch's L2 term, added once per update)."""
        x, y = self._in(images, target)
        decay = weight_decay if self.grads is None else 0.0
        loss, pred, self._pending = self.loss_and_grad(x, y, self.text_features(labels), scale, decay)
        return self.handoff.to_torch(loss, owned=True), self.handoff.to_torch(pred, owned=True)

    def accumulate(self) -> None:
        """Add the last micro-batch's gradients to the update's (what ``loss.backward()`` does to ``.grad``)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.grads = list(pending) if self.grads is None else [s + g for s, g in zip(self.grads, pending)]

    def zero_grad(self) -> None:
        self.grads = None

    def step(self, rates: Sequence[float]) -> bool:
        """Apply the update with ``rates[g]`` for group ``g`` (averaged over the processes first); False when
        there was nothing to apply."""
        if self.grads is None:
            return False
        grads, self.grads = self.grads, None
        if process_group_size() > 1:
            grads = self._averaged(grads)
        self.optimizer.step(grads, rates)
        if process_group_size() > 1:
            self._broadcast_batchnorm()
        return True

    def _averaged(self, grads):
        """The gradients averaged over the processes: one flat vector, one ``all_reduce``."""
        views = [self.handoff.to_torch(g) for g in grads]  # waits for MindSpore's gradients: not communication
        start = time.perf_counter()
        flat, parts = flatten(views)
        torch.distributed.all_reduce(flat)  # SUM (gloo has no AVG), then the mean
        flat.div_(process_group_size())
        averaged = [self.handoff.to_mindspore(part) for part in parts(flat)]
        self.all_reduce_seconds += time.perf_counter() - start
        return averaged

    def _broadcast_batchnorm(self) -> None:
        buffers = batchnorm_statistics(self.net)
        if buffers:
            flat, parts = flatten([self.handoff.to_torch(b) for b in buffers])
            torch.distributed.broadcast(flat, src=0)
            if torch.distributed.get_rank() != 0:
                for param, part in zip(buffers, parts(flat)):
                    assign(param, part.cpu().numpy())

    def eval_batch(self, images: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
        """``(N, L, H, W)`` logits in eval mode, a torch tensor the caller owns."""
        x, _ = self._in(images)
        return self.handoff.to_torch(self.model.forward_tensor(x, self.text_features(labels)), owned=True)

    def text_features(self, labels):
        """MindSpore text features of ``labels``: a label set (encoded once, cached), or features already made,
        a MindSpore tensor passed as it is: ``(L, C)`` for the batch or ``(N, L, C)``, one label set per image
        (the zero-shot episodes)."""
        import mindspore as ms

        return labels if isinstance(labels, ms.Tensor) else self.model.text_features(labels)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The live weights under torch names (numpy views of MindSpore's memory on CPU)."""
        return self.model.state_dict()

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        """Write weights (torch names) into the live network, in place: compiled graphs read that memory."""
        self.model.load_state(state, what="checkpoint")

    def optimizer_state(self) -> Dict[str, Dict[str, np.ndarray]]:
        """The update rule's state per slot (torch's names: ``momentum_buffer``; ``exp_avg``, ``exp_avg_sq``)."""
        return self.optimizer.state()

    def load_optimizer_state(self, state: Dict[str, Dict[str, np.ndarray]], steps: int) -> None:
        self.optimizer.load_state(state, steps)
