"""Test-only: ``train_lseg.py``'s upstream-flag run with one more callback that records, on every rank, what
the DDP tests compare: the initial weights, the first batch, every batch's images (their sums) and, with several
datasets, their dataset indices, and after every optimizer step the loss, the trained weights, BatchNorm
statistics and (MindSpore) the optimizer's momentum buffers.

    python tests/ddp_run.py OUT_DIR [train_lseg.py flags]      # writes OUT_DIR/rank<R>.npz

Lightning's DDP launcher re-runs this same command line for ranks 1..N-1, as it does ``train_lseg.py``.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytorch_lightning as pl

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lang_seg.commands import train as train_lseg  # noqa: E402
from lang_seg.config import NetOptions  # noqa: E402
from lang_seg.names import is_trained  # noqa: E402


def recorded(name: str, options: NetOptions) -> bool:
    return is_trained(name, options) or name.endswith(("running_mean", "running_var"))


class Record(pl.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.data = {}
        self.last_step = 0

    def weights(self, module):
        """The weights under torch names (``net.`` left out), on either backend."""
        return {k[len("net."):]: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

    def on_train_start(self, trainer, module):
        for key, value in self.weights(module).items():  # every tensor: enough to build a net from
            self.data[f"initial/{key}"] = value

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 0 and "batch/images" not in self.data:
            self.data["batch/images"], self.data["batch/target"] = batch[0].numpy(), batch[1].numpy()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.data.setdefault("losses", []).append(float(loss))
        self.data.setdefault("image_sums", []).append(batch[0].double().sum((1, 2, 3)).numpy())
        if len(batch) == 3:  # several datasets: each item's dataset index
            self.data.setdefault("sources", []).append(batch[2].numpy())
        if trainer.global_step == self.last_step:
            return
        self.last_step = step = trainer.global_step
        for key, value in self.weights(module).items():
            if recorded(key, module.options):
                self.data[f"step{step}/{key}"] = value
        if getattr(module, "bridge", None) is not None:
            for key, value in module.bridge.optimizer_state()["momentum_buffer"].items():
                self.data[f"step{step}/momentum.{key}"] = np.array(value)

    def on_train_end(self, trainer, module):
        for key in ("losses", "image_sums", "sources"):
            self.data[key] = np.array(self.data.get(key, []))
        self.data["lr"] = np.array(module.lr)
        os.makedirs(self.out_dir, exist_ok=True)
        np.savez(os.path.join(self.out_dir, f"rank{trainer.global_rank}.npz"), **self.data)


def main(argv) -> int:
    out_dir, flags = argv[0], argv[1:]
    module, datamodule, trainer_kwargs, resume, weights_only = train_lseg.build(train_lseg.build_parser().parse_args(flags))
    trainer_kwargs["callbacks"] = list(trainer_kwargs["callbacks"]) + [Record(out_dir)]
    trainer_kwargs.update(enable_progress_bar=False, num_sanity_val_steps=0)  # the tests compare training only
    pl.Trainer(**trainer_kwargs).fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=weights_only)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
