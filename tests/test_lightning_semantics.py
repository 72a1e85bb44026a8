"""Lightning's semantics kept on the MindSpore backend: the learning rate LearningRateMonitor logs, the
micro-batches gradient accumulation steps at, the precision it accepts."""
import csv

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger

from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.errors import LangSegError
from lang_seg.modules.lseg_module import LSegModule
from lang_seg.modules.lsegmentation_module import poly_lambda

EPOCHS, BATCHES, ACCUMULATE = 3, 5, 2  # 5 micro-batches an epoch: the last update of each has one


def fit(backend, tmp_path, precision="32-true"):
    torch.manual_seed(0)
    module = LSegModule(backbone="tiny_vitb32", num_features=16, pretrained=False, base_lr=0.16, batch_size=2,
                        max_epochs=EPOCHS, backend=backend, accumulate_grad_batches=ACCUMULATE)
    dm = SegmentationDataModule(str(BUNDLED), batch_size=2, base_size=160, crop_size=64, seed=0)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path, name=backend),
                         callbacks=[LearningRateMonitor(logging_interval="step")], limit_train_batches=BATCHES,
                         limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, log_every_n_steps=1, precision=precision,
                         accumulate_grad_batches=ACCUMULATE)
    trainer.fit(module, datamodule=dm)
    rows = list(csv.DictReader(open(trainer.logger.log_dir + "/metrics.csv")))
    return module, trainer, rows


def column(rows, key):
    return np.array([float(r[key]) for r in rows if r.get(key)])


def test_other_precisions_stop_with_one_line(tmp_path):
    with pytest.raises(LangSegError, match="precision 'bf16-mixed' is not available with the MindSpore backend"):
        fit("mindspore", tmp_path, precision="bf16-mixed")


@pytest.mark.slow
def test_learning_rate_and_accumulation_follow_lightning(tmp_path):
    """Accumulating 2 of 5 micro-batches an epoch, Lightning steps torch's SGD after micro-batches 2, 4 and 5,
    and MindSpore's update at the same ones (3 updates an epoch: Lightning decides), with the same losses. LearningRateMonitor
    logs MindSpore's own per-group rate, which follows upstream's poly schedule epoch by epoch, as torch's."""
    _, torch_trainer, torch_rows = fit("torch", tmp_path)
    module, ms_trainer, ms_rows = fit("mindspore", tmp_path)
    assert torch_trainer.global_step == ms_trainer.global_step == module.bridge.optimizer.steps == 3 * EPOCHS
    # Lightning drives both the same way: it logs the loss of each update's last micro-batch
    torch_losses, ms_losses = column(torch_rows, "train_loss"), column(ms_rows, "train_loss")
    assert len(ms_losses) == len(torch_losses) == 3 * EPOCHS
    assert abs(ms_losses[0] - torch_losses[0]) <= 1e-4 * torch_losses[0]
    assert np.max(np.abs(ms_losses - torch_losses) / torch_losses) <= 1e-2
    base = 0.16 / 16 * 2
    for group, scale in (("pg1", 1), ("pg2", 10)):
        expected = np.array([base * scale * poly_lambda(EPOCHS)(epoch) for epoch in range(EPOCHS)
                             for _ in range(BATCHES)])
        np.testing.assert_allclose(column(ms_rows, f"lr-SGD/{group}"), expected, rtol=1e-6)
        np.testing.assert_allclose(column(torch_rows, f"lr-SGD/{group}"), expected, rtol=1e-6)

