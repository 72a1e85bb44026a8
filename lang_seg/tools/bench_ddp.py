"""Training throughput on 1 and on N processes (Lightning's DDP) for each backend, and the MindSpore
backend's gradient all-reduce share of a step.

    python -m lang_seg.tools.bench_ddp                                  # tiny_vitb32, 128x128, batch 2, CPU, 1 and 2
    python -m lang_seg.tools.bench_ddp --backbone clip_vitb32_384 --crop_size 480 --batch_size 1 --accelerator gpu

Each run is ``train_lseg.py``'s own set-up (upstream's flags, the bundled data, random weights) with a
timing callback: images per second over all processes = processes x batch / median step time (the first
``--warmup`` steps, compilation included, are left out); for MindSpore on several processes, the share of
the step spent flattening, all-reducing and splitting the gradients (``MindSporeBridge.all_reduce_seconds``)
and the hand-off path. Runs one after the other, each in its own processes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from lang_seg.data.bundled import ROOT as BUNDLED

RESULT = "BENCH_DDP "


def timing_callback(warmup: int):
    import pytorch_lightning as pl

    class Timing(pl.Callback):
        def __init__(self):
            self.times, self.reduce = [], []

        def _reduce(self, module):
            return module.bridge.all_reduce_seconds if getattr(module, "bridge", None) is not None else 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.start, self.start_reduce = time.perf_counter(), self._reduce(module)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.start)
            self.reduce.append(self._reduce(module) - self.start_reduce)

        def on_train_end(self, trainer, module):
            times, reduce = self.times[warmup:], self.reduce[warmup:]
            bridge = getattr(module, "bridge", None)
            result = {"processes": trainer.world_size, "batch": module.hparams.batch_size,
                      "step_s": statistics.median(times), "steps": len(times),
                      "images_per_s": trainer.world_size * module.hparams.batch_size / statistics.median(times),
                      "all_reduce_share": sum(reduce) / sum(times),
                      "handoff": bridge.handoff.path if bridge is not None else None}
            if trainer.global_rank == 0:
                print(RESULT + json.dumps(result), flush=True)

    return Timing()


def worker(flags: List[str], warmup: int) -> None:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lang_seg.commands import train

    module, datamodule, kwargs, _, _ = train.build(train.build_parser().parse_args(flags))
    callbacks = [c for c in kwargs["callbacks"] if not isinstance(c, ModelCheckpoint)] + [timing_callback(warmup)]
    kwargs.update(callbacks=callbacks, num_sanity_val_steps=0, enable_progress_bar=False, enable_checkpointing=False,
                  logger=False, limit_val_batches=0)
    pl.Trainer(**kwargs).fit(module, datamodule=datamodule)


def run(backend: str, processes: int, args) -> dict:
    flags = ["--exp_name", "bench_ddp", "--backend", backend, "--devices", str(processes), "--accelerator",
             args.accelerator, "--backbone", args.backbone, "--num_features", str(args.num_features),
             "--batch_size", str(args.batch_size), "--crop_size", str(args.crop_size), "--base_size",
             str(args.base_size), "--max_steps", str(args.warmup + args.steps), "--max_epochs", "1000",
             "--no-pretrained", "--seed", "0", "--no_resume", "--data_path", str(BUNDLED)]
    root = str(Path(__file__).resolve().parents[2])  # where lang_seg is imported from
    env = dict(os.environ, MASTER_ADDR=os.environ.get("MASTER_ADDR", "127.0.0.1"),
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory() as cwd:  # Lightning's launcher re-runs this command for ranks 1..N-1
        done = subprocess.run([sys.executable, "-m", "lang_seg.tools.bench_ddp", "--worker", "--warmup", str(args.warmup),
                               *flags], cwd=cwd, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        said = [line for line in done.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(said) if line.startswith("error:")), said[-1] if said else "no output")
        raise SystemExit(f"error: the {backend} run on {processes} processes failed: {reason.removeprefix('error: ')}")
    return json.loads(lines[-1][len(RESULT):])


def format_rows(results: dict) -> str:
    lines = [f"{'backend':10} {'processes':>9} {'step':>9} {'images/s':>9} {'vs 1':>6}  all-reduce share, hand-off"]
    for backend, runs in results.items():
        one = runs[0]["images_per_s"]
        for r in runs:
            extra = f"{100 * r['all_reduce_share']:.2f} % of the step, {r['handoff']}" if r["processes"] > 1 and r["handoff"] else ""
            lines.append(f"{backend:10} {r['processes']:>9} {r['step_s'] * 1000:>7.0f}ms {r['images_per_s']:>9.2f} "
                         f"{r['images_per_s'] / one:>6.2f}  {extra}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:  # one run: --worker --warmup W, then train_lseg.py's flags
        worker(argv[3:], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m lang_seg.tools.bench_ddp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,mindspore")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--backbone", default="tiny_vitb32")
    parser.add_argument("--num_features", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--crop_size", type=int, default=128)
    parser.add_argument("--base_size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out (compilation)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = {b: [run(b, int(n), args) for n in args.processes.split(",")] for b in args.backends.split(",")}
    print(format_rows(results))
    if args.json:
        from lang_seg.files import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
