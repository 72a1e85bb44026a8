"""The one place that knows how this project's Lightning Trainer is set up, for both forms of
``train_lseg.py`` (upstream's flags and the LightningCLI with YAML configs).

Logs and checkpoints go under ``checkpoints/<exp_name>/version_<N>/`` (CSV, plus
TensorBoard when it is installed), ``last.ckpt`` and the best ``pix_acc``
checkpoint are written through a temporary name, and the run stops at the first
non-finite loss.
"""
from __future__ import annotations

import importlib.util
import os
from typing import List, Mapping

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from .callbacks import FiniteLoss, FitSummary, default_checkpoints
from .checkpoint_io import AtomicCheckpointIO

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


def lightning_accumulation(backend: str, accumulate: int) -> int:
    """Lightning's ``accumulate_grad_batches``: it accumulates for torch; the MindSpore backend
    accumulates inside its compiled step, so Lightning must not."""
    return accumulate if backend == "torch" else 1


def trainer_arguments(exp_name: str, given: Mapping) -> dict:
    """``pl.Trainer`` keyword arguments: ``given``, plus this project's defaults for what it leaves unset
    (loggers, the atomic checkpoint plugin, the root folder, checkpoint and loss callbacks)."""
    kwargs = dict(given)
    if kwargs.get("logger") in (None, True):
        kwargs["logger"] = default_loggers(exp_name)
    if not kwargs.get("plugins"):
        kwargs["plugins"] = [AtomicCheckpointIO()]
    if kwargs.get("default_root_dir") is None:
        kwargs["default_root_dir"] = os.path.join(LOG_ROOT, exp_name)
    callbacks = list(kwargs.get("callbacks") or [])
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks) and kwargs.get("enable_checkpointing") is not False:
        callbacks += default_checkpoints()
    for kind in (FiniteLoss, FitSummary):
        if not any(isinstance(c, kind) for c in callbacks):
            callbacks.append(kind())
    kwargs["callbacks"] = callbacks
    return kwargs
