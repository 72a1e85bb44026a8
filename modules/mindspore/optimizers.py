"""The optimizers Lightning steps on the MindSpore backend: torch's ``SGD`` and ``Adam``, whose weights,
gradients and state live in MindSpore.

Lightning drives them as any torch optimizer: its automatic optimisation calls ``step(closure)`` at each
update (after ``accumulate_grad_batches`` micro-batches, and at an epoch's last one), counts the steps
(``global_step``, ``max_steps``), steps the ``LambdaLR`` schedule over ``param_groups`` (which
``LearningRateMonitor`` logs as ``lr-SGD/pg1``), and saves ``state_dict()``. Here ``step`` runs the
closure (``training_step`` and ``backward``: MindSpore's forward, backward and gradient sums), then
MindSpore's update at each group's current ``lr``. ``param_groups`` hold shape-only placeholders (meta
tensors) for the torch reference's parameters, in its order, so ``state_dict()`` is torch's own format,
index for index: a checkpoint's optimizer state resumes on either backend as it is.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from lang_seg.names import is_trained


def placeholders(shapes: Sequence[Tuple[str, tuple]]) -> List[torch.Tensor]:
    """Shape-only stand-ins (no memory) for the torch parameters named in ``shapes``."""
    return [torch.empty(shape, device="meta") for _, shape in shapes]


class MindSporeOptimizer:
    """What ``SGD`` and ``Adam`` below share: the bridge's update behind torch's optimizer interface."""

    def _attach(self, bridge, names: Sequence[str], kind: str, options: dict, trained: Sequence[bool]) -> None:
        self.bridge, self.names, self.trained = bridge, list(names), list(trained)
        bridge.setup_optimizer(kind, **options)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()  # training_step and backward: MindSpore's gradients join the update
        self.bridge.step([group["lr"] for group in self.param_groups])
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.bridge.zero_grad()

    def state_dict(self) -> dict:
        """torch's layout (``state`` by parameter index, ``param_groups``), MindSpore's state inside."""
        saved = self.bridge.optimizer_state()
        steps = self.bridge.optimizer.steps
        params = [p for group in self.param_groups for p in group["params"]]
        try:
            for param, name, trained in zip(params, self.names, self.trained):
                if trained and steps:
                    self.state[param] = {slot: torch.from_numpy(values[name]) for slot, values in saved.items()}
                    self.state[param].update(self._counters(steps))
            return super().state_dict()
        finally:
            self.state.clear()  # the live state stays in MindSpore

    def load_state_dict(self, state_dict: dict) -> None:
        index = {i: name for i, name in enumerate(self.names)}
        saved: Dict[str, Dict[str, np.ndarray]] = {}
        steps = 0
        for i, slots in state_dict.get("state", {}).items():
            for slot, value in slots.items():
                if slot == "step":
                    steps = max(steps, int(torch.as_tensor(value).item()))
                elif isinstance(value, torch.Tensor):
                    saved.setdefault(slot, {})[index[int(i)]] = value.detach().cpu().numpy()
        if "momentum_buffer" in saved and not steps:
            steps = 1  # torch's SGD keeps no step count: a buffer means at least one update
        self.bridge.load_optimizer_state(saved, steps)
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})

    def _counters(self, steps: int) -> dict:
        return {}


class SGD(MindSporeOptimizer, torch.optim.SGD):
    def __init__(self, groups, bridge, shapes, options, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4):
        """``groups``: torch param-group dicts over ``placeholders(shapes)``; ``options``: the net's options."""
        torch.optim.SGD.__init__(self, groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self._attach(bridge, [n for n, _ in shapes], "sgd", {"momentum": momentum},
                     [is_trained(n, options) for n, _ in shapes])


class Adam(MindSporeOptimizer, torch.optim.Adam):
    def __init__(self, groups, bridge, shapes, options, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        torch.optim.Adam.__init__(self, groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self._attach(bridge, [n for n, _ in shapes], "adam", {"betas": betas, "eps": eps},
                     [is_trained(n, options) for n, _ in shapes])

    def _counters(self, steps: int) -> dict:
        return {"step": torch.tensor(float(steps))}  # torch's Adam keeps a count per tensor
