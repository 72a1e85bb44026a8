"""Interrupted runs lose nothing: kill -9 during a checkpoint write keeps the previous last.ckpt, Ctrl-C
during training leaves a resumable one, and resuming repeats the uninterrupted trajectory."""
import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lang_seg.data.bundled import ROOT as BUNDLED

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["--data_path", str(BUNDLED), "--batch_size", "4", "--backbone", "tiny_vitb32", "--num_features", "16",
         "--max_epochs", "1", "--no-pretrained", "--seed", "0", "--base_lr", "0.16", "--base_size", "160",
         "--crop_size", "128", "--backend", "torch"]


def run_python(code: str, cwd, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LANGSEG_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_kill_9_during_a_checkpoint_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "last.ckpt"
    torch.save({"step": 1, "weights": torch.arange(1000.0)}, target)
    before = target.read_bytes()
    child = run_python(f"""
        import time, torch
        from lang_seg.modules.checkpoint_io import AtomicCheckpointIO, TorchFileCheckpointIO

        def slow(self, checkpoint, path, storage_options=None):  # half the file, then hang: kill -9 lands here
            data = open({str(target)!r}, "rb").read()
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2]); f.flush()
                print("writing", flush=True)
                time.sleep(600)

        TorchFileCheckpointIO.save_checkpoint = slow
        AtomicCheckpointIO().save_checkpoint({{"step": 2}}, {str(target)!r})
    """, tmp_path)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == before  # the previous file, whole
    assert torch.load(target, weights_only=True)["step"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.ckpt.")  # the half-written temporary, hidden


def losses(path: Path):
    return [float(r["train_loss"]) for r in csv.DictReader(open(path)) if r.get("train_loss")]


@pytest.mark.slow
def test_ctrl_c_saves_a_resumable_checkpoint_and_resuming_repeats_the_trajectory(tmp_path):
    """A real SIGINT at step 3 of 6 (mid-epoch): one line, a last.ckpt, and the resumed run's losses are the
    uninterrupted run's."""
    child = run_python(f"""
        import os, signal, sys
        import train_lseg
        from lang_seg.modules.lseg_module import LSegModule

        # as in a terminal, even when the suite runs in the background (which starts children with SIGINT ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        step = LSegModule.training_step
        def interrupted(self, batch, batch_idx):
            if self.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C does
            return step(self, batch, batch_idx)
        LSegModule.training_step = interrupted
        sys.exit(train_lseg.main(["--exp_name", "cut"] + {TRAIN!r}))
    """, tmp_path)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1 and "Traceback" not in err, err[-3000:]
    last = Path("checkpoints/cut/version_0/checkpoints/last.ckpt")
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == [f"interrupted at step 3 (epoch 0): saved {last}; run the same command to resume from it"]
    assert torch.load(tmp_path / last, weights_only=True)["global_step"] == 3

    import train_lseg

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert train_lseg.main(["--exp_name", "cut"] + TRAIN) == 0  # resumes from last.ckpt
        assert train_lseg.main(["--exp_name", "whole"] + TRAIN) == 0
    finally:
        os.chdir(cwd)
    cut = losses(tmp_path / "checkpoints/cut/version_0/metrics.csv") + \
        losses(tmp_path / "checkpoints/cut/version_1/metrics.csv")
    whole = losses(tmp_path / "checkpoints/whole/version_0/metrics.csv")
    assert len(whole) == 6 and len(cut) == 6
    assert cut == pytest.approx(whole, rel=1e-6, abs=0)
