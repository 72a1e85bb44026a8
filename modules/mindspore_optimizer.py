"""What Lightning sees of the MindSpore backend's SGD (Lightning glue, beside the LightningModule)."""
from __future__ import annotations

import numpy as np
import torch


class SGD(torch.optim.Optimizer):
    """MindSpore's SGD as Lightning sees it (named ``SGD``, so ``LearningRateMonitor`` logs ``lr-SGD/pg1``
    and ``lr-SGD/pg2`` on both backends).

    The update itself runs inside MindSpore's compiled step; ``step()`` only lets Lightning count it
    (``global_step``, ``max_steps``); ``param_groups[i]["lr"]`` follow MindSpore's own per-group rate for
    the next update; ``state_dict`` / ``load_state_dict`` carry MindSpore's optimizer state (momentum,
    step counters) through Lightning's own checkpoints."""

    def __init__(self, params, owner, momentum: float = 0.9, weight_decay: float = 1e-4):
        super().__init__(params, defaults={"momentum": momentum, "weight_decay": weight_decay})
        self.owner = owner  # the LightningModule, which holds the bridge

    def follow_mindspore(self) -> None:
        """Set each group's ``lr`` to the rate MindSpore's schedule gives its next update."""
        bridge = self.owner.bridge
        if bridge is not None and bridge.step is not None:
            for group, rate in zip(self.param_groups, bridge.step.learning_rates()):
                group["lr"] = rate

    def step(self, closure=None):
        result = closure() if closure is not None else None
        self.follow_mindspore()
        return result

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
