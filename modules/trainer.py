"""The one place that knows how this project's Lightning Trainer is set up, for both forms of
``train_lseg.py`` (upstream's flags and the LightningCLI with YAML configs).

Logs and checkpoints go under ``checkpoints/<exp_name>/version_<N>/`` (CSV, plus
TensorBoard when it is installed), ``last.ckpt`` and the best ``pix_acc``
checkpoint are written through a temporary name, and the run stops at the first
non-finite loss.

Devices and processes, as upstream trains (every GPU, DDP, synchronised BatchNorm): the accelerator and
devices default to ``auto``; with more than one process the strategy is Lightning's ``ddp`` (for the
MindSpore backend its subclass without torch's DDP wrapper, ``MindSporeDDPStrategy``); the torch
backend synchronises BatchNorm across processes (``SyncBatchNormAnyDevice``: GPUs and CPUs). The MindSpore
backend's BatchNorm stays per process (its layers run inside compiled graphs that a torch process group
cannot enter), and ``auto`` never picks a GPU MindSpore cannot use. A user's own checkpoint callbacks and
plugins keep the atomic writes and the resumable ``last.ckpt``.
"""
from __future__ import annotations

import importlib.util
import os
from typing import List, Mapping, Optional

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities import rank_zero_warn

from lang_seg.errors import LangSegError

from .callbacks import FiniteLoss, FitSummary, Interruptible, LastCheckpoint, default_checkpoints
from .checkpoint_io import AtomicCheckpointIO
from .sync_batchnorm import SyncBatchNormAnyDevice

GPU_NAMES = ("gpu", "cuda")
PRECISIONS_32 = ("32-true", "32", 32)

LOG_ROOT = "checkpoints"


def tensorboard_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def default_loggers(exp_name: str) -> List[Logger]:
    """CSV under ``checkpoints/<exp_name>/version_<N>/``, TensorBoard beside it when installed."""
    csv = CSVLogger(LOG_ROOT, name=exp_name)
    loggers: List[Logger] = [csv]
    if tensorboard_available():
        loggers.append(TensorBoardLogger(LOG_ROOT, name=exp_name, version=csv.version, default_hp_metric=False))
    return loggers


def checkpoint_for_lightning(path, trust: bool = False, resume: bool = True, flag: str = "--resume") -> bool:
    """Check a checkpoint before Lightning loads it (``ckpt_path``): it exists, is safe to unpickle (or
    trusted), and is a Lightning checkpoint (with the optimizer's state when ``resume``). Returns the
    ``weights_only`` to pass to ``fit``/``validate``."""
    from lang_seg.errors import LangSegError
    from lang_seg.safe_load import lightning_weights_only, load_torch_file

    if not os.path.isfile(path):
        raise LangSegError(f"checkpoint {path} does not exist: check {flag}")
    weights_only = lightning_weights_only(path, trust)
    raw = load_torch_file(path, trust)
    needed = ("pytorch-lightning_version", "state_dict") + (("optimizer_states", "loops") if resume else ())
    missing = [k for k in needed if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise LangSegError(f"checkpoint {path} is not a Lightning training checkpoint (no {missing[0]!r}): "
                           f"pass a last.ckpt written by train_lseg.py to {flag}")
    return weights_only


def torch_sees_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def mindspore_accelerator(accelerator: Optional[str]) -> str:
    """The accelerator for the MindSpore backend: ``auto`` is a GPU only where both torch and MindSpore's GPU
    plugin can use one, else the CPU; ``gpu`` where MindSpore cannot use one stops with what is missing."""
    from lang_seg.backends.mindspore_backend import gpu_problem

    accelerator = str(accelerator or "auto").lower()
    if accelerator == "auto":
        return "gpu" if torch_sees_gpu() and gpu_problem() is None else "cpu"
    if accelerator in GPU_NAMES:
        problem = gpu_problem() or (None if torch_sees_gpu() else "torch sees no CUDA GPU")
        if problem:
            raise LangSegError(f"--backend mindspore cannot train on the GPU: {problem}; use --accelerator cpu")
    elif accelerator != "cpu":
        raise LangSegError(f"--backend mindspore runs on 'cpu' or 'gpu', not {accelerator!r}: use --accelerator cpu")
    return accelerator


def process_count(kwargs: Mapping) -> int:
    """Processes the Trainer will run: devices per node (an int, a list, ``auto``: every GPU or one CPU) times
    nodes."""
    devices, accelerator = kwargs.get("devices", "auto"), str(kwargs.get("accelerator", "auto")).lower()
    if isinstance(devices, str) and devices.lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, (list, tuple)):
        per_node = len(devices)
    elif devices in ("auto", -1, "-1"):
        per_node = max(1, _gpu_count()) if accelerator in GPU_NAMES else 1
    else:
        per_node = int(devices)
    return per_node * int(kwargs.get("num_nodes") or 1)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def mindspore_strategy(strategy, processes: int):
    """Lightning's DDP without torch's wrapper for more than one process; refuses other strategies."""
    from .mindspore.strategy import MindSporeDDPStrategy

    name = strategy if isinstance(strategy, str) else type(strategy).__name__
    if isinstance(strategy, MindSporeDDPStrategy):
        return strategy
    if name not in ("auto", "ddp", "ddp_mindspore"):
        raise LangSegError(f"strategy {name!r} is not available with the MindSpore backend: it trains on one "
                           "process or several with DDP (--strategy auto or ddp)")
    return MindSporeDDPStrategy() if processes > 1 or name != "auto" else "auto"


def with_atomic_writes(plugins) -> list:
    """``plugins`` whose checkpoint writes go through ``AtomicCheckpointIO`` (a user's own ``CheckpointIO`` is
    wrapped, keeping its format)."""
    plugins = list(plugins or [])
    for i, plugin in enumerate(plugins):
        if isinstance(plugin, CheckpointIO):
            if not isinstance(plugin, AtomicCheckpointIO):
                plugins[i] = AtomicCheckpointIO(plugin)
            return plugins
    return plugins + [AtomicCheckpointIO()]


def trainer_arguments(exp_name: str, given: Mapping, backend: str = "torch") -> dict:
    """``pl.Trainer`` keyword arguments: ``given``, plus this project's defaults for what it leaves unset
    (loggers, the atomic checkpoint plugin, the root folder, checkpoint and loss callbacks, the devices and,
    for the torch backend, synchronised BatchNorm under DDP). ``sync_batchnorm=None`` means the default:
    on for torch (it only acts with more than one process), off for MindSpore."""
    kwargs = dict(given)
    for key in ("accelerator", "devices", "strategy"):
        kwargs[key] = kwargs.get(key) or "auto"
    if backend == "mindspore":
        kwargs["accelerator"] = mindspore_accelerator(kwargs["accelerator"])
        kwargs["strategy"] = mindspore_strategy(kwargs["strategy"], process_count(kwargs))
        # Lightning's summary counts torch parameters (none here): the module says its own when built
        kwargs.setdefault("enable_model_summary", False)
        if kwargs.get("sync_batchnorm"):
            raise LangSegError(
                "--sync_batchnorm is not available with the MindSpore backend (its BatchNorm runs inside compiled "
                "graphs that no process group reaches): leave it off for per-process BatchNorm, or use --backend torch"
            )
        kwargs["sync_batchnorm"] = False
    else:
        if str(kwargs["accelerator"]).lower() in GPU_NAMES and not torch_sees_gpu():
            raise LangSegError("--accelerator gpu: torch sees no CUDA GPU here; use --accelerator cpu (or auto)")
        if kwargs.get("sync_batchnorm") is None:
            kwargs["sync_batchnorm"] = True
    if kwargs.get("logger") in (None, True):
        kwargs["logger"] = default_loggers(exp_name)
    kwargs["plugins"] = with_atomic_writes(kwargs.get("plugins"))
    if kwargs["sync_batchnorm"] and not any(isinstance(p, SyncBatchNormAnyDevice) for p in kwargs["plugins"]):
        on_gpu = str(kwargs["accelerator"]).lower() in GPU_NAMES or (kwargs["accelerator"] == "auto" and torch_sees_gpu())
        kwargs["plugins"] = list(kwargs["plugins"]) + [SyncBatchNormAnyDevice(gpu=on_gpu)]
    if kwargs.get("default_root_dir") is None:
        kwargs["default_root_dir"] = os.path.join(LOG_ROOT, exp_name)
    callbacks = list(kwargs.get("callbacks") or [])
    if kwargs.get("enable_checkpointing") is not False:
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks += default_checkpoints()
        elif not any(isinstance(c, LastCheckpoint) for c in callbacks):
            callbacks.append(LastCheckpoint())  # resuming (and Ctrl-C) wants the latest state beside the user's
    for kind in (FiniteLoss, FitSummary, Interruptible):
        if not any(isinstance(c, kind) for c in callbacks):
            callbacks.append(kind())
    kwargs["callbacks"] = callbacks
    return kwargs


def check_mindspore_trainer(trainer) -> None:
    """What the MindSpore backend supports of a Trainer, checked when a run starts: full precision
    (its compiled step is float32), no gradient clipping (the gradients stay in MindSpore), and, under DDP,
    per-process BatchNorm (said once)."""
    if trainer.precision not in PRECISIONS_32:
        raise LangSegError(
            f"precision {trainer.precision!r} is not available with the MindSpore backend (its compiled step is "
            "float32): use precision='32-true', or --backend torch for mixed precision"
        )
    if trainer.gradient_clip_val:
        raise LangSegError("gradient clipping is not available with the MindSpore backend (its gradients stay in "
                           "MindSpore): leave gradient_clip_val unset, or use --backend torch")
    if trainer.world_size > 1:
        rank_zero_warn(f"MindSpore backend on {trainer.world_size} processes: gradients are averaged across them, "
                       "BatchNorm statistics are per process (rank 0's are kept), not synchronised")
