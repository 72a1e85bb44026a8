"""The MindSpore backend on several processes (Lightning's DDP, gloo on CPU): each process computes its
gradients in MindSpore, the bridge averages them through the process group, MindSpore applies the update."""
import numpy as np
import pytest
import torch

from lang_seg.commands import train as train_lseg
from lang_seg.data.bundled import ROOT as BUNDLED

from .ddp_helpers import TINY, records, run, weights_at

def optimizer_names():
    """torch's optimizer order of the tiny net's parameters (``net.pretrained``'s, then ``net.scratch``'s)."""
    from lang_seg.config import NetOptions
    from lang_seg.modules.models.lseg_net import LSegNet

    net = LSegNet(NetOptions("tiny_vitb32", features=16))
    return [f"{part}.{n}" for part in ("pretrained", "scratch") for n, _ in getattr(net, part).named_parameters()]


SMALL = ["--data_path", str(BUNDLED), "--batch_size", "2", "--base_size", "160", "--crop_size", "64"]
STEPS = 3


def one_line_error(capsys, argv) -> str:
    assert train_lseg.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_gpu_and_sync_batchnorm_errors_are_one_line(tmp_path, monkeypatch, capsys):
    """Where MindSpore cannot use a GPU (this machine: no CUDA 11 / cuDNN 8), --accelerator gpu stops before
    anything is built; synchronised BatchNorm is refused for MindSpore; nothing is written."""
    monkeypatch.chdir(tmp_path)
    base = ["--exp_name", "x", "--backend", "mindspore", *TINY, *SMALL]
    err = one_line_error(capsys, base + ["--accelerator", "gpu"])
    assert "cannot train on the GPU" in err and "libcudnn.so.8" in err and "--accelerator cpu" in err
    err = one_line_error(capsys, base + ["--accelerator", "cpu", "--sync_batchnorm"])
    assert "--sync_batchnorm is not available with the MindSpore backend" in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.fixture(scope="module")
def ms_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ms")
    done = run(cwd, "rec", ["--exp_name", "ms", "--backend", "mindspore", "--devices", "2",
                            "--max_steps", str(STEPS), *TINY, *SMALL])
    return cwd, done, records(cwd, "rec", 2)


@pytest.mark.slow
def test_every_rank_holds_the_same_weights_after_every_step(ms_run):
    _, done, (rank0, rank1) = ms_run
    assert "[ERROR]" not in done.stderr  # no MindSpore device call on CPU (it printed an ERROR line)
    assert "BatchNorm statistics are per process" in done.stderr
    assert not np.array_equal(rank0["batch/images"], rank1["batch/images"])  # each rank its own slice
    assert len(rank0["losses"]) == len(rank1["losses"]) == STEPS
    initial = weights_at(rank0, "initial")
    for step in range(1, STEPS + 1):
        mine, theirs = weights_at(rank0, f"step{step}"), weights_at(rank1, f"step{step}")
        assert mine.keys() == theirs.keys() and len(mine) > 200
        for key in mine:
            assert np.array_equal(mine[key], theirs[key]), (step, key)  # bit for bit, momentum and BN too
        assert not np.array_equal(mine["scratch.head1.weight"], initial["scratch.head1.weight"])


@pytest.mark.slow
def test_first_update_is_the_mean_of_the_single_process_updates(ms_run):
    """One process from the same weights on each rank's first batch: the 2-process update is their mean.
    SGD's first update is ``-lr * momentum buffer`` (the buffer starts as the gradient plus weight decay), so
    the buffers are compared: 1e-6 relative."""
    from lang_seg.backends.mindspore_backend import load_into
    from lang_seg.modules.mindspore.bridge import MindSporeBridge
    from lang_seg.config import NetOptions
    from lang_seg.labels import ade20k_labels

    _, _, (rank0, rank1) = ms_run
    bridge = MindSporeBridge(NetOptions("tiny_vitb32", features=16), weights_at(rank0, "initial"))
    bridge.setup_optimizer("sgd", momentum=0.9)
    start = {k: np.array(v) for k, v in bridge.model.ms_state().items()}  # a copy: ms_state() shares memory
    lr = float(rank0["lr"])
    single = []
    for record in (rank0, rank1):
        load_into(bridge.model.net, start)
        bridge.load_optimizer_state({}, 0)
        bridge.train_batch(torch.from_numpy(record["batch/images"]), torch.from_numpy(record["batch/target"]),
                           ade20k_labels(), weight_decay=1e-4)
        bridge.accumulate()
        bridge.step([lr, 10 * lr])
        single.append({f"momentum.{k}": np.array(v) for k, v in bridge.optimizer_state()["momentum_buffer"].items()})
    both = weights_at(rank0, "step1")
    keys = sorted(single[0])
    mean = np.concatenate([(single[0][k] + single[1][k]).ravel() / 2 for k in keys])
    ddp = np.concatenate([both[k].ravel() for k in keys])
    assert len(keys) > 100 and np.linalg.norm(ddp - mean) <= 1e-6 * np.linalg.norm(mean)


@pytest.mark.slow
def test_follows_the_torch_backend_on_two_processes(ms_run, tmp_path):
    """Per-process BatchNorm on both, same seed: the parity bounds of one process (first loss 1e-4, later
    losses and the weight update so far 1e-2 relative)."""
    _, _, ms_records = ms_run
    run(tmp_path, "rec", ["--exp_name", "t", "--backend", "torch", "--devices", "2", "--no-sync_batchnorm",
                          "--max_steps", str(STEPS), *TINY, *SMALL])
    for ms, ref in zip(ms_records, records(tmp_path, "rec", 2)):
        assert abs(ms["losses"][0] - ref["losses"][0]) <= 1e-4 * ref["losses"][0]
        assert np.max(np.abs(ms["losses"] - ref["losses"]) / ref["losses"]) <= 1e-2
        start, ms_end, ref_end = (weights_at(ms, "initial"), weights_at(ms, f"step{STEPS}"),
                                  weights_at(ref, f"step{STEPS}"))
        keys = [k for k in ref_end if k in ms_end and not k.endswith(("running_mean", "running_var"))]
        assert len(keys) > 100
        ms_update = np.concatenate([(ms_end[k] - start[k]).ravel() for k in keys])
        ref_update = np.concatenate([(ref_end[k] - start[k]).ravel() for k in keys])
        assert np.linalg.norm(ms_update - ref_update) <= 1e-2 * np.linalg.norm(ref_update)


@pytest.mark.slow
def test_rank_zero_writes_and_one_process_resumes(ms_run, tmp_path, monkeypatch):
    """The 2-process run's checkpoint (written by rank 0; every rank holds the same state) resumes on one
    process: weights, momentum and step counters come back, and training goes on from step 3."""
    cwd, _, (rank0, _) = ms_run
    last = cwd / "checkpoints/ms/version_0/checkpoints/last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == STEPS
    index = {name: i for i, name in enumerate(optimizer_names())}
    for key, value in weights_at(rank0, f"step{STEPS}").items():
        if key.startswith("momentum."):
            slot = saved["optimizer_states"][0]["state"][index[key[len("momentum."):]]]
            assert np.array_equal(slot["momentum_buffer"].numpy(), value), key
        else:
            assert np.array_equal(saved["state_dict"]["net." + key].numpy(), value), key
    monkeypatch.chdir(tmp_path)
    assert train_lseg.main(["--exp_name", "resumed", "--backend", "mindspore", "--accelerator", "cpu", "--devices", "1",
                            "--resume", str(last), "--max_steps", str(STEPS + 2), *TINY, *SMALL]) == 0
    resumed = torch.load(tmp_path / "checkpoints/resumed/version_0/checkpoints/last.ckpt", map_location="cpu",
                         weights_only=False)
    assert resumed["global_step"] == STEPS + 2
    assert resumed["lr_schedulers"][0]["last_epoch"] == saved["lr_schedulers"][0]["last_epoch"]
    key = "scratch.head1.weight"
    assert not np.array_equal(resumed["state_dict"]["net." + key], saved["state_dict"]["net." + key])


@pytest.mark.slow
def test_benchmark_reports_throughput_and_the_all_reduce_share(tmp_path):
    """``python -m lang_seg.tools.bench_ddp`` on 2 MindSpore processes: one row with images/s, the all-reduce's share
    of the step and the hand-off path (shared memory on CPU)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "ddp.json"
    done = subprocess.run([sys.executable, "-m", "lang_seg.tools.bench_ddp", "--backends", "mindspore", "--processes", "2",
                           "--steps", "2", "--warmup", "1", "--crop_size", "64", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = json.loads(out.read_text())["mindspore"]
    assert row["processes"] == 2 and row["steps"] == 2 and row["images_per_s"] > 0
    assert 0 < row["all_reduce_share"] < 1 and row["handoff"] == "numpy (shared memory)"
    assert "% of the step, numpy (shared memory)" in done.stdout
