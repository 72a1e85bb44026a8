"""What Lightning sees of the MindSpore backend's SGD (Lightning glue, beside the LightningModule)."""
from __future__ import annotations

import numpy as np
import torch


class MindSporeOptimizer(torch.optim.Optimizer):
    """The update itself runs inside MindSpore's compiled step; ``step()`` only lets Lightning count
    it (``global_step``, ``max_steps``), and ``state_dict`` / ``load_state_dict`` carry MindSpore's
    optimizer state (momentum, step counters) through Lightning's own checkpoints."""

    def __init__(self, params, owner):
        super().__init__(params, defaults={})
        self.owner = owner  # the LightningModule, which holds the bridge

    def step(self, closure=None):
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True):
        pass

    def state_dict(self):
        bridge = self.owner.bridge
        if bridge is None or bridge.step is None:
            return {"mindspore": None}
        # torch tensors: Lightning reloads checkpoints with torch.load(weights_only=True)
        return {"mindspore": {k: torch.from_numpy(np.array(v)) for k, v in bridge.optimizer_state().items()}}

    def load_state_dict(self, state_dict):
        state = state_dict.get("mindspore")
        self.owner.restore_ms_optimizer({k: v.numpy() for k, v in state.items()} if state is not None else None)
