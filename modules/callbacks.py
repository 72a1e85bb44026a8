"""Side concerns of a training run, as Lightning callbacks."""
from __future__ import annotations

import math
import os
import statistics
import sys
import time

from typing import List, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from lang_seg.errors import LangSegError


@rank_zero_only
def say(*args, **kwargs) -> None:
    """``print`` on the first process only."""
    print(*args, **kwargs)


class FiniteLoss(pl.Callback):
    """Stop at the first non-finite loss, before anything is saved from it: every process of a DDP run
    together (one decision across them), so none is left waiting at the next collective."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        finite = loss is None or bool(torch.isfinite(torch.as_tensor(loss)).all())
        if not trainer.strategy.reduce_boolean_decision(finite, all=True):
            where = trainer.log_dir or trainer.default_root_dir
            value = float(loss) if not finite else "finite here, non-finite on another process"
            raise LangSegError(
                f"non-finite loss ({value}) at step {trainer.global_step}, epoch {trainer.current_epoch}: "
                f"lower the base learning rate; the last good checkpoint is kept under {where}"
            )


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``, rewritten after every validation and at the end of training.

    Lightning's ``save_last`` only writes when a top-k checkpoint was written in
    the same step, so an epoch without a better ``pix_acc`` left it behind;
    resuming (upstream's habit) wants the latest state.
    """

    def __init__(self, dirpath: Optional[str] = None):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)


def default_checkpoints(dirpath: Optional[str] = None) -> List[ModelCheckpoint]:
    """The best validation pixel accuracy, as upstream keeps it, and the latest state."""
    best = ModelCheckpoint(dirpath=dirpath, monitor="pix_acc", mode="max", save_top_k=1,
                           filename="result-{epoch}-{pix_acc:.4f}")
    return [best, LastCheckpoint(dirpath)]


class Interruptible(pl.Callback):
    """Ctrl-C during training leaves a resumable ``last.ckpt`` and one line saying so; a run resumed from a
    mid-epoch checkpoint goes on with the epoch's next batch (``SegmentationDataModule.skip_batches``; with a
    seed, the uninterrupted run's trajectory). Lightning fetches the first batch before any epoch hook, so
    the count travels in the checkpoint and is handed to the data module when the checkpoint is restored."""

    KEY = "lang_seg_batches_done_in_epoch"

    def __init__(self):
        self._steps_at_batch_start = 0

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        checkpoint[self.KEY] = done if done < trainer.num_training_batches else 0

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        if hasattr(trainer.datamodule, "skip_batches"):
            trainer.datamodule.skip_batches = checkpoint.get(self.KEY, 0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._steps_at_batch_start = trainer.global_step

    def on_exception(self, trainer, pl_module, exception):
        last = [c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)]
        if not isinstance(exception, KeyboardInterrupt) or trainer.state.fn != "fit" or not last:
            return
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if trainer.global_step > self._steps_at_batch_start and progress.current.completed < progress.current.ready:
            progress.increment_processed()  # the interrupted batch's update already ran: count it as done
            progress.increment_completed()
        path = os.path.join(last[0].dirpath, "last.ckpt")
        trainer.save_checkpoint(path)
        say(f"interrupted at step {trainer.global_step} (epoch {trainer.current_epoch}): saved {path}; "
            "run the same command to resume from it", file=sys.stderr)


class FitSummary(pl.Callback):
    """Say where the run's checkpoint and logs are, its last metrics and how long its training batches took
    (the first one apart: it includes MindSpore's graph compilation)."""

    def __init__(self):
        self.batch_seconds: List[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batch_seconds.append(time.perf_counter() - self._start)

    @rank_zero_only  # one summary for the run, not one per process
    def on_fit_end(self, trainer, pl_module):
        last = [c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)]
        best = trainer.checkpoint_callback
        path = last[0].best_model_path if last else (best.best_model_path if best is not None else "")
        metrics = {k: round(float(v), 4) for k, v in sorted(trainer.callback_metrics.items())
                   if math.isfinite(float(v))}
        print(f"checkpoint: {path or '(none saved)'}")
        print(f"metrics: {metrics}")
        if self.batch_seconds:
            first, rest = self.batch_seconds[0], self.batch_seconds[1:]
            print(f"training batches: {len(self.batch_seconds)}, first {first:.2f} s"
                  + (f", median of the rest {statistics.median(rest):.2f} s" if rest else ""))
        for logger in trainer.loggers:
            name = "metrics.csv" if type(logger).__name__ == "CSVLogger" else ""
            print(f"log: {os.path.join(logger.log_dir, name) if name else logger.log_dir}")
