"""The bridge between the Lightning shell (torch tensors) and the MindSpore compute core.

The MindSpore network runs on the device Lightning chose for the process
(``cpu``, or ``cuda:<local rank>`` -> MindSpore ``GPU:<local rank>``); batches
cross to it and loss and predictions come back onto the LightningModule's
device through ``lang_seg.modules.handoff`` (shared memory on CPU, DLPack or host
memory on a GPU). The MindSpore network holds the live weights while
training; ``state_dict`` gives them under torch names for Lightning's
checkpoints.

Under data-parallel training (a ``torch.distributed`` process group of more
than one process, set up by Lightning's DDP strategy), each process computes its
gradients in MindSpore (``SplitStep``), the bridge averages them across
processes in one ``all_reduce`` of one flat torch vector (on the module's
device: gloo on CPU, NCCL on GPUs), and MindSpore applies the
SGD update: every process holds the same weights after every step. BatchNorm's
running statistics then come from rank 0 (one ``broadcast``), as torch's
``DistributedDataParallel`` does with its default ``broadcast_buffers``.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from lang_seg.backends.mindspore_backend import MindSporeModel, assign
from lang_seg.backends.mindspore_split import SplitStep
from lang_seg.backends.mindspore_train import TrainStep
from lang_seg.config import NetOptions
from .handoff import Handoff


def mindspore_device(device: torch.device) -> str:
    """The MindSpore device for a torch one: ``cpu``, or ``gpu:<index>`` for ``cuda:<index>``."""
    device = torch.device(device)
    return "cpu" if device.type == "cpu" else f"gpu:{device.index or 0}"


def process_group_size() -> int:
    """Processes in the default ``torch.distributed`` group (1 when none is set up)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class MindSporeBridge:
    """The MindSpore network behind a Lightning module: eval at once, training after ``setup_training``."""

    def __init__(self, options: NetOptions, state: Dict[str, np.ndarray], mode: Optional[str] = None,
                 device: torch.device = torch.device("cpu")):
        self.model = MindSporeModel(options, device=mindspore_device(device), state=state, mode=mode,
                                    what="initial weights")
        self.handoff = Handoff(device)
        self.step: Optional[TrainStep] = None
        self.split: Optional[SplitStep] = None
        self.world_size = 1
        self.all_reduce_seconds = 0.0  # time spent averaging gradients across processes

    @property
    def handoff_seconds(self) -> float:
        """Time spent crossing between frameworks."""
        return self.handoff.seconds

    def setup_training(self, lr: float, steps_per_epoch: Optional[int], max_epochs: int, momentum: float = 0.9,
                       weight_decay: float = 1e-4, accumulate: int = 1) -> None:
        """Build the compiled training step (SGD state starts fresh; see ``load_optimizer_state``).
        ``steps_per_epoch=None``: the schedule follows ``set_epoch``."""
        self.step = TrainStep(self.model.net, lr, steps_per_epoch, max_epochs, momentum=momentum,
                              weight_decay=weight_decay, accumulate=accumulate, mode=self.model.mode)
        self.world_size = process_group_size()
        self.split = SplitStep(self.step) if self.world_size > 1 else None

    def _in(self, images: torch.Tensor, target: Optional[torch.Tensor] = None):
        x = self.handoff.to_mindspore(images, np.float32)
        y = self.handoff.to_mindspore(target, np.int32) if target is not None else None  # the CPU loss wants int32
        return x, y

    def _wait(self, tensors) -> None:
        """Wait until MindSpore has computed ``tensors``: the compiled step may still be running (always on a
        GPU; on CPU where MindSpore pipelines its launches), and that time is compute, not hand-off or
        all-reduce."""
        if self.handoff.device.type != "cpu":
            import mindspore as ms

            ms.runtime.synchronize()
        else:
            for t in tensors:  # ms.runtime.synchronize() prints an ERROR line on CPU, and Tensor.data_sync
                t.asnumpy()  # made a 2-process step 2.7x slower (measured); asnumpy waits, and is a view here

    def _out(self, *tensors):
        self._wait(tensors)
        return tuple(self.handoff.to_torch(t) for t in tensors)

    def train_batch(self, images: torch.Tensor, target: torch.Tensor, labels: Sequence[str], last: bool = False):
        """One micro-batch of training: ``(loss, out, stepped)`` with loss and out as torch tensors on the
        module's device. ``last``: the epoch's last micro-batch (an accumulated update is applied there)."""
        x, y = self._in(images, target)
        text = self.model.text_features(labels)
        if self.split is None:
            loss, out, stepped = self.step(x, y, text, last=last)
        else:
            loss, out, grads = self.split.gradient_step(x, y, text, last=last)
            stepped = grads is not None
            if stepped:
                self._averaged_update(grads)
        loss_t, out_t = self._out(loss, out)
        return loss_t, out_t, stepped

    def _averaged_update(self, grads) -> None:
        """Average the gradients over the processes (one flat vector, one ``all_reduce``), apply them, and
        give every process rank 0's BatchNorm statistics (one ``broadcast``)."""
        dist = torch.distributed
        self._wait(grads)
        start = time.perf_counter()  # from here: waiting for the other processes, moving and averaging
        flat, parts = self._flatten(grads)
        dist.all_reduce(flat)  # SUM (gloo has no AVG), then the mean
        flat.div_(self.world_size)
        averaged = [self.handoff.to_mindspore(part) for part in parts(flat)]
        self.all_reduce_seconds += time.perf_counter() - start
        self.split.apply_gradients(averaged)
        if self.split.buffers:
            flat, parts = self._flatten(self.split.buffers)
            dist.broadcast(flat, src=0)
            if dist.get_rank() != 0:
                for param, part in zip(self.split.buffers, parts(flat)):
                    assign(param, part.cpu().numpy())

    def _flatten(self, tensors):
        """MindSpore tensors as one torch vector on the module's device, and how to cut it back into views."""
        torch_tensors = [self.handoff.to_torch(t) for t in tensors]
        shapes = [t.shape for t in torch_tensors]
        flat = torch.cat([t.reshape(-1) for t in torch_tensors])

        def parts(vector):
            return [v.view(shape) for v, shape in zip(vector.split([s.numel() for s in shapes]), shapes)]

        return flat, parts

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
        for key, param in self.step.optimizer_slots().items():
            fresh_default = 1.0 if key.startswith("fresh.") else 0.0
            assign(param, state[key] if key in state else np.full(param.shape, fresh_default, np.float32))
        assign(self.step.optimizer.global_step, state["global_step"])
        self.step.micro_step = int(state.get("micro_step", 0)) % self.step.accumulate
