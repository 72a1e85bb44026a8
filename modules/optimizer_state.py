"""One training state, two optimizers: convert a checkpoint's optimizer state between the backends.

Both run the same SGD (momentum, weight decay, no dampening); torch's momentum
buffer of a tensor is MindSpore's ``accum`` once that tensor has been updated
once (``fresh`` = 0), so a checkpoint from one backend resumes on the other.
Tensors are matched by their torch names.
"""
from __future__ import annotations

import copy
import warnings
from typing import Dict, List

import numpy as np
import torch


def is_mindspore_state(optimizer_state: dict) -> bool:
    return "mindspore" in optimizer_state


def mindspore_from_torch(optimizer_state: dict, names: List[str], global_step: int) -> Dict[str, np.ndarray]:
    """torch SGD ``state_dict()`` -> the bridge's ``optimizer_state()``; ``names[i]`` names param index ``i``."""
    state: Dict[str, np.ndarray] = {"global_step": np.array([global_step], np.int32), "micro_step": np.array(0)}
    for index, slot in optimizer_state["state"].items():
        buffer = slot.get("momentum_buffer")
        if buffer is not None:
            state[f"momentum.{names[index]}"] = buffer.detach().cpu().numpy()
            state[f"fresh.{names[index]}"] = np.zeros(buffer.shape, np.float32)
    return state


def torch_from_mindspore(state: Dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                         scheduler, names: List[str], epochs_done: int):
    """The bridge's saved state -> ``(optimizer.state_dict(), scheduler.state_dict())`` for a fresh torch
    ``optimizer``/``scheduler`` over the same parameters (``names[i]`` names param index ``i``)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for name, param in zip(names, params):
        momentum = state.get(f"momentum.{name}")
        fresh = state.get(f"fresh.{name}")
        if momentum is not None and fresh is not None and float(np.asarray(fresh).reshape(-1)[0]) == 0.0:
            optimizer.state[param]["momentum_buffer"] = torch.as_tensor(np.asarray(momentum)).reshape(param.shape).clone()
    with warnings.catch_warnings():  # stepping the schedule without optimizer steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs_done):
            scheduler.step()
    return optimizer.state_dict(), scheduler.state_dict()


AUTOMATIC = "epoch_loop.automatic_optimization.optim_progress"
MANUAL = "epoch_loop.manual_optimization.optim_step_progress"


def move_step_counter(checkpoint: dict, to_manual: bool) -> None:
    """Lightning counts optimizer steps (``global_step``) in the automatic- or the manual-optimisation loop,
    whichever the saving run used (torch: automatic; MindSpore: manual); carry the count to the other."""
    loop = checkpoint.get("loops", {}).get("fit_loop")
    if not loop or AUTOMATIC not in loop or MANUAL not in loop:
        return
    automatic = loop[AUTOMATIC]["optimizer"]
    if to_manual:
        loop[MANUAL] = copy.deepcopy(automatic["step"])
    else:
        automatic["step"] = copy.deepcopy(loop[MANUAL])
        automatic["zero_grad"] = {
            part: {**counts, "started": counts["completed"]} for part, counts in loop[MANUAL].items()
        }
