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

from .callbacks import FiniteLoss, FitSummary, Interruptible, default_checkpoints
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
    for kind in (FiniteLoss, FitSummary, Interruptible):
        if not any(isinstance(c, kind) for c in callbacks):
            callbacks.append(kind())
    kwargs["callbacks"] = callbacks
    return kwargs
