"""Several processes stop together: a learning rate that blows up makes the loss non-finite, every process
(Lightning's DDP, gloo on CPU) decides it together and exits with the one-line message, none waits at the
next collective; the run's own lines (the summary, the Ctrl-C message) come from one process."""
import subprocess
import sys
import time

import pytest

from lang_seg.data.bundled import ROOT as BUNDLED

from .ddp_helpers import TINY, environment, free_port

FLAGS = ["--data_path", str(BUNDLED), "--batch_size", "2", "--base_size", "80", "--crop_size", "64",
         "--devices", "2", "--accelerator", "cpu", "--max_steps", "12"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_a_non_finite_loss_stops_every_process(tmp_path, backend):
    tiny = ["1e9" if flag == "0.16" else flag for flag in TINY]  # a base rate that diverges within a few steps
    extra = ["--no-sync_batchnorm"] if backend == "torch" else []
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lang_seg.commands.train", "--exp_name", "nan", "--backend", backend,
                           *tiny, *FLAGS, *extra], cwd=tmp_path, env=environment(MASTER_PORT=free_port()),
                          capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert errors and all("non-finite loss" in e and "lower the base learning rate" in e for e in errors), errors
    assert "Traceback" not in done.stderr
    assert "training batches:" not in done.stdout  # no summary of a failed run
    assert took < 300, took  # no process left waiting at a collective (gloo's default timeout is 30 minutes)
