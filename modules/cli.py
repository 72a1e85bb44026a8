"""The Lightning CLI form of training: ``python train_lseg.py fit --config configs/<name>.yaml``.

Defaults match the upstream-flag form of ``train_lseg.py``: logs and
checkpoints under ``checkpoints/<exp_name>/version_<N>/`` (CSV, plus
TensorBoard when it is installed), ``last.ckpt`` and the best ``pix_acc``
checkpoint written through a temporary name, a stop at the first non-finite
loss. The learning rate follows ``data.batch_size`` and the schedule
``trainer.max_epochs``, as upstream's single parser does. Gradient
accumulation is ``model.accumulate_grad_batches`` (Lightning's own, on both backends). Devices, strategy and ``trainer.sync_batchnorm`` go through the
same set-up as the upstream-flag form (``lang_seg.modules.trainer.trainer_arguments``).
"""
from __future__ import annotations

from typing import Optional

from pytorch_lightning.cli import LightningCLI

from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.data.registry import run_labels

from .lseg_module import LSegModule
from .trainer import checkpoint_for_lightning, trainer_arguments

DEFAULT_EPOCHS = 1000  # Lightning's own default when neither max_epochs nor max_steps is set


def schedule_epochs(max_epochs: Optional[int]) -> int:
    return DEFAULT_EPOCHS if max_epochs in (None, -1) else max_epochs


class LSegCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        super().__init__(
            LSegModule, SegmentationDataModule, args=args, run=run, auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "omegaconf"},  # configs may interpolate: data.seed: ${seed_everything}
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--exp_name", default="lseg", help="logs and checkpoints go to checkpoints/<exp_name>/")
        parser.add_argument("--trust-checkpoint", action="store_true",
                            help="--ckpt_path may hold objects other than tensors (runs code from it: trusted files only)")
        parser.link_arguments("data.batch_size", "model.batch_size")
        parser.link_arguments("trainer.max_epochs", "model.max_epochs", compute_fn=schedule_epochs)
        parser.link_arguments("model.accumulate_grad_batches", "trainer.accumulate_grad_batches")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # Lightning reads --ckpt_path weights-only right after parsing: refuse or prepare the file first
        config = self.config.get(self.config.get("subcommand") or "", None)
        if config is not None and config.get("ckpt_path"):
            config["weights_only"] = checkpoint_for_lightning(
                config["ckpt_path"], config.get("trust_checkpoint", False), resume=self.config["subcommand"] == "fit",
                flag="--ckpt_path")

    def before_instantiate_classes(self) -> None:
        # issue #21: without model.labels the model learns the dataset's own classes, not ADE20K's 150 (several
        # datasets: {name: classes}, each batch scored with its dataset's)
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.model.labels is None:
            config.model.labels = run_labels(config.data.dataset, config.data.data_path)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyper-parameters weights-only whatever it is told: allow what the
        # checked (or trusted) file names for that one read
        from lang_seg.safe_load import allowed_globals

        config = self.config.get(self.config.get("subcommand") or "", None)
        if config is None or not config.get("ckpt_path"):
            return super()._parse_ckpt_path()
        with allowed_globals(config["ckpt_path"], config.get("trust_checkpoint", False)):
            super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, "trainer", default={})
        kwargs = trainer_arguments(self._get(self.config_init, "exp_name"), {**config, **kwargs},
                                   backend=self.model.backend)
        return super().instantiate_trainer(**kwargs)

    def before_fit(self):
        # a missing dataset, a label set or crop size that does not fit fails here, before anything is written
        self.datamodule.setup("fit")
        self.model.check_data(self.datamodule)

    def before_validate(self):
        self.datamodule.setup("validate")
        self.model.check_data(self.datamodule)
