"""The Lightning CLI form of training: ``python train_lseg.py fit --config configs/<name>.yaml``.

Defaults match the upstream-flag form of ``train_lseg.py``: logs and
checkpoints under ``checkpoints/<exp_name>/version_<N>/`` (CSV, plus
TensorBoard when it is installed), ``last.ckpt`` and the best ``pix_acc``
checkpoint written through a temporary name, a stop at the first non-finite
loss. The learning rate follows ``data.batch_size`` and the schedule
``trainer.max_epochs``, as upstream's single parser does. Gradient
accumulation is ``model.accumulate_grad_batches`` for both backends (the
MindSpore backend accumulates inside its compiled step; Lightning's own
accumulation is used for torch).
"""
from __future__ import annotations

import importlib.util
import os
from typing import List, Optional

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from data.datamodule import SegmentationDataModule

from .callbacks import FiniteLoss, FitSummary, default_checkpoints
from .checkpoint_io import AtomicCheckpointIO
from .lseg_module import LSegModule

LOG_ROOT = "checkpoints"
DEFAULT_EPOCHS = 1000  # Lightning's own default when neither max_epochs nor max_steps is set


def tensorboard_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def default_loggers(exp_name: str) -> List[Logger]:
    """CSV under ``checkpoints/<exp_name>/version_<N>/``, TensorBoard beside it when installed."""
    csv = CSVLogger(LOG_ROOT, name=exp_name)
    loggers: List[Logger] = [csv]
    if tensorboard_available():
        loggers.append(TensorBoardLogger(LOG_ROOT, name=exp_name, version=csv.version, default_hp_metric=False))
    return loggers


def trainer_accumulation(backend: str, accumulate: int) -> int:
    return accumulate if backend == "torch" else 1


def schedule_epochs(max_epochs: Optional[int]) -> int:
    return DEFAULT_EPOCHS if max_epochs in (None, -1) else max_epochs


class LSegCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        super().__init__(
            LSegModule, SegmentationDataModule, args=args, run=run, auto_configure_optimizers=False,
            trainer_defaults={"callbacks": [FiniteLoss(), FitSummary()]},
            save_config_kwargs={"overwrite": True},
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--exp_name", default="lseg", help="logs and checkpoints go to checkpoints/<exp_name>/")
        parser.link_arguments("data.batch_size", "model.batch_size")
        parser.link_arguments("trainer.max_epochs", "model.max_epochs", compute_fn=schedule_epochs)
        parser.link_arguments(("model.backend", "model.accumulate_grad_batches"), "trainer.accumulate_grad_batches",
                              compute_fn=trainer_accumulation)

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, "trainer", default={})
        exp_name = self._get(self.config_init, "exp_name")
        if config.get("logger") is None:
            kwargs["logger"] = default_loggers(exp_name)
        if not config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        if config.get("default_root_dir") is None:
            kwargs["default_root_dir"] = os.path.join(LOG_ROOT, exp_name)
        callbacks = list(config.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks) and config.get("enable_checkpointing", True) is not False:
            kwargs["callbacks"] = callbacks + default_checkpoints()
        return super().instantiate_trainer(**kwargs)

    def before_fit(self):
        # a missing dataset fails here, with the expected path, before anything is written
        self.datamodule.setup("fit")

    def before_validate(self):
        self.datamodule.setup("validate")
