"""Launching DDP runs for the tests: subprocesses on CPU (gloo), every process on loopback, a free port per run."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from lang_seg.data.bundled import ROOT as BUNDLED

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--backbone", "tiny_vitb32", "--num_features", "16", "--no-pretrained", "--seed", "0", "--base_lr", "0.16",
        "--no_resume"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MASTER_ADDR="127.0.0.1", LANGSEG_OFFLINE="1", HF_HUB_OFFLINE="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def command(cwd: Path, out: str, flags):
    return [sys.executable, str(ROOT / "tests" / "ddp_run.py"), str(cwd / out), "--accelerator", "cpu", *flags]


def run(cwd: Path, out: str, flags, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    """``tests/ddp_run.py`` (train_lseg.py plus a per-rank record) in ``cwd``; fails the test on a bad exit."""
    env.setdefault("MASTER_PORT", free_port())
    done = subprocess.run(command(cwd, out, flags), cwd=cwd, env=environment(**env), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_nodes(cwd: Path, out: str, flags, nodes: int, timeout: int = 600):
    """One process per "node" on this machine, started as a cluster launcher would: Lightning's
    ``LightningEnvironment`` reads ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``."""
    port = free_port()
    procs = [subprocess.Popen(command(cwd, out, [*flags, "--num_nodes", str(nodes), "--devices", "1"]), cwd=cwd,
                              env=environment(MASTER_PORT=port, NODE_RANK=node, LOCAL_RANK=0, WORLD_SIZE=nodes),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for node in range(nodes)]
    outputs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]


def records(cwd: Path, out: str, ranks: int):
    return [dict(np.load(cwd / out / f"rank{r}.npz")) for r in range(ranks)]


def fully_labelled_data(tmp: Path) -> Path:
    """The bundled data less its two photos (whose masks hold "other", the ignore label): every pixel of every
    crop labelled, so each process's mean loss weighs its pixels as the one-process run's mean does."""
    root = tmp / "labelled"
    for part in ("images", "annotations"):
        for split in ("training", "validation"):
            source = BUNDLED / "ADEChallengeData2016" / part / split
            target = root / "ADEChallengeData2016" / part / split
            target.mkdir(parents=True)
            for f in source.iterdir():
                if "_scene_" in f.name:
                    shutil.copy(f, target / f.name)
    return root


def weights_at(record: dict, step: str):
    return {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith(step + "/")}
