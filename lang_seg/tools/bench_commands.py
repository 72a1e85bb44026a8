"""Time and peak memory of the commands users run, on both backends: ``train_lseg.py``, then
``test_lseg.py --eval`` on the checkpoint it wrote.

    python -m lang_seg.tools.bench_commands    # train_lseg.py --dataset ade20k --backbone clip_vitb32_384
                                         #   --batch_size 1 --max_steps 8 --no-pretrained (480 crops, 150 labels)
    python -m lang_seg.tools.bench_commands --backbone tiny_vitb32 --crop_size 64 --max_steps 3 --eval_scales 1.0

Each command runs as a user starts it, in a process of its own, on the bundled data (or ``--data_path``).
Its peak memory is the kernel's account of that process and its children (``wait4``'s ``ru_maxrss``, the
figure ``/usr/bin/time -v`` prints); the training batch times are the ones ``train_lseg.py`` prints at the end
(the first batch apart: it includes graph compilation).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.evaluate import DEFAULT_SCALES, base_size_for

BATCHES = re.compile(r"training batches: (\d+), first ([\d.]+) s(?:, median of the rest ([\d.]+) s)?")
CHECKPOINT = re.compile(r"checkpoint: (.+)")  # the path train_lseg.py says it wrote (its last line of the kind)


def measure(cmd: List[str], cwd: str) -> Dict[str, object]:
    """Run ``cmd`` and return its wall time, peak resident memory (MB) and output; one line on failure."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[1:3])} failed with status {proc.returncode}:\n{text[-2000:]}")
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024, "output": text}


def train_command(backend: str, args: argparse.Namespace) -> List[str]:
    return [sys.executable, "-m", "lang_seg.commands.train", "--exp_name", f"bench_{backend}",
            "--dataset", "ade20k", "--data_path", args.data_path, "--backbone", args.backbone,
            "--batch_size", str(args.batch_size), "--max_steps", str(args.max_steps), "--no-pretrained",
            "--crop_size", str(args.crop_size), "--base_size", str(base_size_for(args.crop_size)),
            "--backend", backend, "--seed", "0", "--accelerator", "cpu", "--devices", "1"]


def eval_command(backend: str, checkpoint: str, args: argparse.Namespace) -> List[str]:
    return [sys.executable, "-m", "lang_seg.commands.test", "--eval", "--dataset", "ade20k",
            "--data-path", args.data_path, "--weights", checkpoint, "--backend", backend,
            "--crop-size", str(args.crop_size), "--base-size", str(base_size_for(args.crop_size)),
            "--scales", args.eval_scales, "--jobname", f"bench_{backend}"]


def run_backend(backend: str, args: argparse.Namespace, workdir: str) -> Dict[str, object]:
    train = measure(train_command(backend, args), workdir)
    found = BATCHES.search(train["output"])
    if found is None:
        raise SystemExit(f"error: train_lseg.py printed no training batch times:\n{train['output'][-2000:]}")
    written = [os.path.join(workdir, path.strip()) for path in CHECKPOINT.findall(train["output"])]
    if not written or not os.path.isfile(written[-1]):
        raise SystemExit(f"error: train_lseg.py saved no checkpoint:\n{train['output'][-2000:]}")
    evaluation = measure(eval_command(backend, written[-1], args), workdir)
    return {"train": {"wall_s": train["wall_s"], "peak_rss_mb": train["peak_rss_mb"], "batches": int(found[1]),
                      "first_batch_s": float(found[2]),
                      "batch_median_s": float(found[3]) if found[3] else float("nan")},
            "eval": {"wall_s": evaluation["wall_s"], "peak_rss_mb": evaluation["peak_rss_mb"]}}


def format_table(res: dict) -> str:
    t, m = res["torch"], res["mindspore"]
    rows = [("train_lseg.py: first batch", "train", "first_batch_s", "s"),
            ("train_lseg.py: later batches (median)", "train", "batch_median_s", "s"),
            ("train_lseg.py: whole command", "train", "wall_s", "s"),
            ("train_lseg.py: peak memory (RSS)", "train", "peak_rss_mb", "MB"),
            ("test_lseg.py --eval: whole command", "eval", "wall_s", "s"),
            ("test_lseg.py --eval: peak memory (RSS)", "eval", "peak_rss_mb", "MB")]
    lines = [f"train_lseg.py --backbone {res['backbone']} --batch_size {res['batch_size']} --max_steps "
             f"{res['max_steps']} --crop_size {res['crop_size']} --no-pretrained (150 labels); test_lseg.py --eval "
             f"--scales {res['eval_scales']} on its checkpoint; {res['machine']}",
             f"{'command':<40} {'torch':>10} {'mindspore':>10} {'ms/torch':>9}"]
    for name, part, key, unit in rows:
        a, b = t[part][key], m[part][key]
        cell = (lambda v: f"{v:>8.0f}MB") if unit == "MB" else (lambda v: f"{v:>9.1f}s")
        lines.append(f"{name:<40} {cell(a)} {cell(b)} {b / a if a > 0 else float('nan'):>9.2f}")
    return "\n".join(lines)


def main(argv: List[str] = None) -> int:
    from .bench import machine

    parser = argparse.ArgumentParser(prog="python -m lang_seg.tools.bench_commands", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="clip_vitb32_384")
    parser.add_argument("--crop_size", type=int, default=480)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--max_steps", type=int, default=8)
    parser.add_argument("--eval_scales", default=",".join(map(str, DEFAULT_SCALES)), help="test_lseg.py's --scales (default upstream's)")
    parser.add_argument("--data_path", default=str(BUNDLED), help="default: the dataset bundled with the package")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    result = dict(backbone=args.backbone, crop_size=args.crop_size, batch_size=args.batch_size,
                  max_steps=args.max_steps, eval_scales=args.eval_scales, machine=machine())
    with tempfile.TemporaryDirectory(prefix="bench_commands_") as workdir:
        for backend in ("torch", "mindspore"):
            result[backend] = run_backend(backend, args, workdir)
    print(format_table(result))
    if args.json:
        from lang_seg.files import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
