"""Probes behind the README's account of where the MindSpore backend's CPU time and memory go.

    python scripts/ms_cpu_probes.py conv-memory [--size 120] [--convs 1 4 8] [--shifted]
    python scripts/ms_cpu_probes.py conv-kernels [--size 60]
    python scripts/ms_cpu_probes.py upsample [--size 120]
    python scripts/ms_cpu_probes.py compile-cache [--size 128]
    python scripts/ms_cpu_probes.py train-memory [--size 480] [--backbone clip_vitb32_384]
    python scripts/ms_cpu_probes.py memory-reuse
    python scripts/ms_cpu_probes.py memory-options [--size 480] [--backbone clip_vitb32_384]
    python scripts/ms_cpu_probes.py compile-time [--size 64] [--backbone clip_vitb32_384]
    python scripts/ms_cpu_probes.py single-ops [--size 96]
    python scripts/ms_cpu_probes.py bn-fold [--size 480] [--backbone clip_vitb32_384]

Each probe runs its measurements in fresh subprocesses (MindSpore never frees a
compiled graph in-process) and prints one line per measurement.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONV_STACK = """
import os, sys, time, numpy as np
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
n, hw, k, framework = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if framework.startswith("mindspore"):
    import mindspore as ms
    from mindspore import nn, ops
    class Shifted(nn.Cell):  # a 3x3 convolution as one 1x1 convolution into 9x the channels, then 9 shifted sums
        def __init__(self):
            super().__init__()
            self.weight = ms.Parameter(ms.Tensor(np.random.randn(256, 256, 3, 3).astype(np.float32) * 0.02))
        def construct(self, x):
            h, w = x.shape[2], x.shape[3]
            z = ops.pad(ops.conv2d(x, self.weight.transpose(2, 3, 0, 1).reshape(9 * 256, 256, 1, 1)), (1, 1, 1, 1))
            y = z[:, :256, :h, :w]
            for i in range(1, 9):
                y = y + z[:, i * 256:(i + 1) * 256, i // 3:i // 3 + h, i % 3:i % 3 + w]
            return y
    if framework == "mindspore-onednn":  # the oneDNN AOT operators (modules/models_ms/onednn_conv.py)
        os.environ["LANGSEG_MS_CONV"] = "onednn"
        from lang_seg.modules.models_ms.onednn_conv import Conv2d
        make = lambda: Conv2d(256, 256, k, pad_mode="pad", padding=k // 2, has_bias=False)
    else:
        make = (lambda: Shifted()) if framework == "mindspore-shifted" else \
            (lambda: nn.Conv2d(256, 256, k, pad_mode="pad", padding=k // 2, has_bias=False))
    convs = nn.CellList([make() for _ in range(n)])
    def loss(x):
        for c in convs:
            x = c(x)
        return (x * x).mean()
    step = ms.jit(ms.value_and_grad(loss, None, convs.trainable_params()), jit_level="O1")
    x = ms.Tensor(np.random.randn(1, 256, hw, hw).astype(np.float32))
    run = lambda: step(x)[0].asnumpy()
else:
    import torch
    convs = torch.nn.Sequential(*[torch.nn.Conv2d(256, 256, k, padding=k // 2, bias=False) for _ in range(n)])
    x = torch.randn(1, 256, hw, hw)
    def run():
        convs.zero_grad()
        (convs(x) ** 2).mean().backward()
base = rss(); run(); start = time.perf_counter(); run()
print(f"{framework:17s} {n} conv{k}x{k} 256ch {hw}x{hw} fwd+bwd: {time.perf_counter() - start:6.2f} s, "
      f"memory held after the step +{rss() - base:5.0f} MB (activations {n * 256 * hw * hw * 4 / 2**20:.0f} MB)")
"""

UPSAMPLE = """
import os, sys, time, numpy as np
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
import mindspore as ms
from mindspore import ops
hw, variant = int(sys.argv[1]), sys.argv[2]
def matrix(n):  # x2 bilinear with aligned corners along one axis, as a (2n, n) matrix
    m = np.zeros((2 * n, n), np.float32)
    src = np.arange(2 * n) * (n - 1) / (2 * n - 1)
    i0 = np.floor(src).astype(int); i1 = np.minimum(i0 + 1, n - 1); w = (src - i0).astype(np.float32)
    np.add.at(m, (np.arange(2 * n), i0), 1 - w); np.add.at(m, (np.arange(2 * n), i1), w)
    return ms.Tensor(m)
rows, cols = matrix(hw), matrix(hw)
def up(x):
    if variant == "interpolate":
        return ops.interpolate(x, size=(2 * hw, 2 * hw), mode="bilinear", align_corners=True)
    return ops.matmul(ops.matmul(rows, x), cols.T)
x = ms.Tensor(np.random.RandomState(0).randn(1, 256, hw, hw).astype(np.float32))
def loss(x):
    return (up(x) ** 2).mean()
step = ms.jit(ms.value_and_grad(loss), jit_level="O1")
step(x); times = []
for _ in range(5):
    start = time.perf_counter(); _, g = step(x); g.asnumpy(); times.append(time.perf_counter() - start)
out = ms.jit(up)(x).asnumpy()
np.save(sys.argv[3], out)
print(f"x2 bilinear ({variant:11s}) 256ch {hw}x{hw} fwd+bwd: median {sorted(times)[2] * 1000:7.1f} ms")
"""

PHASES = """
import sys, time, numpy as np
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
size, backbone = int(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
def say(what):
    print(f"{what:32s} resident {rss():7.0f} MB  ({time.perf_counter() - start:5.0f} s)", flush=True)
import mindspore as ms
from lang_seg.backends.mindspore_backend import MindSporeModel
from lang_seg.backends.mindspore_train import TrainStep
from lang_seg.config import NetOptions
from lang_seg.labels import ade20k_labels
model = MindSporeModel(NetOptions(backbone))
say(f"{backbone} built")
labels = ade20k_labels()
text = model.text_features(labels)
text.asnumpy()
say("text features, 150 labels")
x = np.random.RandomState(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
y = np.random.RandomState(1).randint(0, 150, (1, size, size)).astype(np.int32)
model.logits(x, labels)
say(f"eval forward {size}x{size}")
step = TrainStep(model.net, 1e-4, 10, 10)
for i in range(2):
    loss, _, _ = step(ms.from_numpy(x), ms.from_numpy(y), text)
    float(loss.asnumpy())
    say(f"training step {i + 1} {size}x{size}")
"""

CACHE = """
import os, sys, time, numpy as np
size, mode = int(sys.argv[1]), sys.argv[2]
if mode == "cache":
    os.environ["MS_COMPILER_CACHE_ENABLE"] = "1"
    os.environ["MS_COMPILER_CACHE_PATH"] = sys.argv[3]
import lang_seg
model = lang_seg.load_model(None, backend="mindspore", backbone="tiny_vitb32", seed=0)
start = time.perf_counter()
out = model.logits(np.random.RandomState(0).randn(1, 3, size, size).astype(np.float32), ["cat", "dog"])
print(f"{time.perf_counter() - start:.2f} {float(np.abs(out).max())} {int(np.isnan(out).sum())}")
"""

CHAIN = """
import sys, numpy as np, mindspore as ms
from mindspore import ops
def peak():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) / 1024
n = int(sys.argv[1])
def chain(x):
    for _ in range(n):
        x = ops.sin(x) * 1.01
    return x.sum()
x = ms.Tensor(np.ones((64, 1024, 1024), np.float32))  # 256 MB
before = peak()
ms.jit(chain, jit_level="O1")(x).asnumpy()
print(f"{n:3d} chained element-wise ops on a 256 MB tensor, compiled: peak {peak() - before:5.0f} MB above the input")
"""

OPTIONS = """
import sys, time, numpy as np
size, backbone, variant = int(sys.argv[1]), sys.argv[2], sys.argv[3]
import mindspore as ms
if variant == "set_memory O1":
    ms.runtime.set_memory(optimize_level="O1")
from lang_seg.backends import mindspore_backend, mindspore_train
if variant == "jit level O0":
    mindspore_backend.compiler = mindspore_train.compiler = lambda mode: (lambda fn: ms.jit(fn, jit_level="O0"))
from lang_seg.config import NetOptions
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
model = mindspore_backend.MindSporeModel(NetOptions(backbone))
text = model.text_features([f"label {i}" for i in range(20)])
x = ms.Tensor(np.random.RandomState(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32))
y = ms.Tensor(np.random.RandomState(1).randint(0, 20, (1, size, size)).astype(np.int32))
step = mindspore_train.TrainStep(model.net, 1e-4, 10, 10)
times = []
for _ in range(3):
    start = time.perf_counter()
    float(step(x, y, text)[0].asnumpy())
    times.append(time.perf_counter() - start)
print(f"{variant:14s} resident after 3 training steps {rss():6.0f} MB, steps {times[1]:.1f} s {times[2]:.1f} s")
"""

COMPILE = """
import sys, time, numpy as np
variant, backbone, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
import mindspore as ms
from mindspore import nn, ops
from lang_seg.backends import mindspore_train
from lang_seg.backends.mindspore_backend import MindSporeModel
from lang_seg.config import NetOptions
model = MindSporeModel(NetOptions(backbone))
text = model.text_features([f"label {i}" for i in range(20)])
x = ms.Tensor(np.random.RandomState(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32))
y = ms.Tensor(np.random.RandomState(1).randint(0, 20, (1, size, size)).astype(np.int32))
if variant == "loss and gradients":
    run = mindspore_train.LossAndGrad(model.net)
elif variant == "training step":
    run = mindspore_train.TrainStep(model.net, 1e-4, 10, 10)
else:  # the same step with each group's rate a Parameter set from the host, not a schedule in the graph
    grad = mindspore_train.LossAndGrad(model.net)
    rates = [ms.Parameter(ms.Tensor(1e-4, ms.float32), name="lr_backbone"),
             ms.Parameter(ms.Tensor(1e-3, ms.float32), name="lr_decoder")]
    groups = [{"params": [p for p, n in zip(grad.params, grad.names) if n.startswith(prefix)], "lr": rate,
               "weight_decay": 1e-4} for prefix, rate in zip(("pretrained.", "scratch."), rates)]
    sgd = nn.SGD(groups, learning_rate=1e-4, momentum=0.9, weight_decay=1e-4)
    order = {id(p): i for i, p in enumerate(grad.params)}
    perm = [order[id(p)] for p in sgd.parameters]
    def step(x, target, text_features):
        (loss, out), grads = grad._fn(x, target, text_features)
        return ops.depend(loss, sgd(tuple(grads[i] for i in perm))), out
    compiled = ms.jit(step, jit_level="O1")
    def run(x, target, text_features):
        model.net.set_train(True)
        return compiled(x, target, text_features)
times = []
for _ in range(2):
    start = time.perf_counter()
    float(run(x, y, text)[0].asnumpy())
    times.append(time.perf_counter() - start)
print(f"{variant:32s} first call {times[0]:6.1f} s, second {times[1]:5.2f} s "
      f"({len(mindspore_train.trainable_parameters(model.net))} trained tensors)")
"""

SINGLE_OP = """
import os, sys, time, numpy as np
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
op, hw, framework = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
x = np.random.RandomState(0).randn(1, 256, hw, hw).astype(np.float32)
if framework.startswith("mindspore"):
    os.environ["LANGSEG_MS_CONV"] = "onednn" if framework == "mindspore-onednn" else "native"
    import mindspore as ms
    from mindspore import nn, ops
    from lang_seg.modules.models_ms.lseg_blocks import Interpolate  # what the network runs
    from lang_seg.modules.models_ms.onednn_conv import Conv2d  # nn.Conv2d on the oneDNN operators (or not: the env above)
    layer = {"conv3x3": lambda: Conv2d(256, 256, 3, pad_mode="pad", padding=1, has_bias=True),
             "upsample x2": Interpolate, "batchnorm": lambda: nn.BatchNorm2d(256, momentum=0.9)}[op]()
    layer.set_train(True)
    def loss(t):
        return (layer(t) ** 2).mean()
    step = ms.jit(ms.value_and_grad(loss, 0, layer.trainable_params() or None), jit_level="O1")
    xt = ms.Tensor(x)
    def run():
        _, grads = step(xt)
        (grads[0] if isinstance(grads, tuple) else grads).asnumpy()
else:
    import torch
    layer = {"conv3x3": lambda: torch.nn.Conv2d(256, 256, 3, padding=1),
             "upsample x2": lambda: (lambda t: torch.nn.functional.interpolate(t, scale_factor=2.0, mode="bilinear",
                                                                               align_corners=True)),
             "batchnorm": lambda: torch.nn.BatchNorm2d(256)}[op]()
    xt = torch.from_numpy(x).requires_grad_(True)
    def run():
        xt.grad = None
        (layer(xt) ** 2).mean().backward()
base = rss(); run(); times = []
for _ in range(7):
    start = time.perf_counter(); run(); times.append(time.perf_counter() - start)
print(f"{sorted(times)[3] * 1000:.1f} {rss() - base:.0f}")
"""

EVAL_BN = """
import sys, time, numpy as np
size, backbone, backend, use_bn = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "bn"
import lang_seg
from lang_seg.labels import ade20k_labels
model = lang_seg.load_model(None, backend=backend, backbone=backbone, seed=0, use_bn=use_bn)
x = np.random.RandomState(0).randn(1, 3, size, size).astype(np.float32)
labels = ade20k_labels()
model.logits(x, labels)
times = []
for _ in range(5):
    start = time.perf_counter(); model.logits(x, labels); times.append(time.perf_counter() - start)
print(f"{sorted(times)[2] * 1000:.0f}")
"""


def run_script(code: str, *args: str, env=None) -> subprocess.CompletedProcess:
    """Run ``code`` as a script file (MindSpore's compile cache reads its entry script) in a fresh process."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", dir=ROOT, prefix=".probe_", delete=False) as script:
        script.write(code)
    try:
        return subprocess.run([sys.executable, script.name, *args], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
    finally:
        os.remove(script.name)


def python(code: str, *args: str) -> str:
    result = run_script(code, *args)
    if result.returncode:
        raise SystemExit(result.stderr[-2000:])
    return result.stdout.strip()


def conv_memory(args):
    for framework in ("mindspore", "mindspore-onednn", "torch"):
        for n in args.convs:
            print(python(CONV_STACK, str(n), str(args.size), "3", framework))
    print(python(CONV_STACK, str(max(args.convs)), str(args.size), "1", "mindspore"))
    print(python(CONV_STACK, str(max(args.convs)), str(args.size), "1", "mindspore-onednn"))
    if args.shifted:
        print(python(CONV_STACK, str(max(args.convs)), str(args.size), "3", "mindspore-shifted"))


def conv_kernels(args):
    """Which oneDNN implementation each framework runs for a 3x3 convolution (ONEDNN_VERBOSE)."""
    for framework in ("mindspore", "torch"):
        result = run_script(CONV_STACK, "1", str(args.size), "3", framework, env={"ONEDNN_VERBOSE": "1"})
        kernels = sorted({",".join(line.split(",")[5:9]) for line in result.stdout.splitlines()
                          if line.startswith("onednn_verbose") and ",exec," in line and "convolution" in line})
        for kernel in kernels:
            print(f"{framework:9s} {kernel}")


def upsample(args):
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("interpolate", "matmul"):
            print(python(UPSAMPLE, str(args.size), variant, os.path.join(tmp, variant)))
        diff = np.abs(np.load(os.path.join(tmp, "interpolate.npy")) - np.load(os.path.join(tmp, "matmul.npy"))).max()
        print(f"max |interpolate - matmul| = {diff:.2e}")


def train_memory(args):
    """Resident memory of one MindSpore process after each phase of a training run (what the training
    command does: build, encode the label set, validate, train)."""
    result = run_script(PHASES, str(args.size), args.backbone)
    print(result.stdout.strip() if not result.returncode else result.stderr[-2000:])


def compile_cache(args):
    """MindSpore's own on-disk compile cache (MS_COMPILER_CACHE_ENABLE): start-up time and whether a second
    process that loads the cached graph computes the same logits."""
    with tempfile.TemporaryDirectory() as cache:
        plain = python(CACHE, str(args.size), "plain").split()
        first = python(CACHE, str(args.size), "cache", cache).split()
        second = python(CACHE, str(args.size), "cache", cache).split()
    for name, (seconds, peak, nans) in (("no cache", plain), ("cache, 1st process", first),
                                        ("cache, 2nd process", second)):
        print(f"{name:20s} first logits call {float(seconds):6.2f} s, max |logit| {peak}, NaN values {nans}")


def memory_reuse(args):
    """Whether MindSpore's CPU graphs reuse memory along a chain of operations (forward only)."""
    for n in (4, 16):
        result = run_script(CHAIN, str(n))
        print(result.stdout.strip() if not result.returncode else result.stderr[-2000:])


def memory_options(args):
    """Resident memory of the training step under MindSpore's memory and jit-level options."""
    for variant in ("default", "set_memory O1", "jit level O0"):
        result = run_script(OPTIONS, str(args.size), args.backbone, variant)
        print(result.stdout.strip() if not result.returncode else result.stderr[-2000:])


def compile_time(args):
    """First-call (compile) time of the loss and gradients alone, of the training step with SGD, and of
    the step with the rates set from the host."""
    for variant in ("loss and gradients", "training step", "training step, host-set rates"):
        result = run_script(COMPILE, variant, args.backbone, str(args.size))
        print(result.stdout.strip() if not result.returncode else result.stderr[-2000:])


def single_ops(args):
    """Forward+backward of the DPT decoder's operations alone (256 channels, one map of --size), median of 7,
    each in a fresh process per framework, with the memory each process holds after its runs (RSS growth from
    before the first). ``conv3x3, oneDNN op``: MindSpore on the oneDNN AOT operators (modules/models_ms/
    onednn_conv.py), its time also as a multiple of nn.Conv2d's."""
    print(f"{'operation (fwd+bwd)':<31} {'torch':>9} {'mindspore':>10} {'ms/torch':>9} {'held: torch':>12} "
          f"{'mindspore':>10}")
    native = {}
    for op, framework in (("conv3x3", "mindspore"), ("conv3x3", "mindspore-onednn"), ("upsample x2", "mindspore"),
                          ("batchnorm", "mindspore")):
        (t, t_held), (m, m_held) = (map(float, python(SINGLE_OP, op, str(args.size), f).split())
                                    for f in ("torch", framework))
        name = f"{op} 256ch {args.size}x{args.size}" + (", oneDNN op" if framework.endswith("onednn") else "")
        note = f"  ({m / native[op]:.2f}x nn.Conv2d's time)" if op in native else ""
        native.setdefault(op, m)
        print(f"{name:<31} {t:>7.1f}ms {m:>8.1f}ms {m / t:>9.2f} {t_held:>10.0f}MB {m_held:>8.0f}MB{note}")


def bn_fold(args):
    """What folding BatchNorm into the convolutions would give the eval forward: the network built without
    BatchNorm has the folded network's structure (a convolution with a bias where conv+BN was)."""
    print(f"{'eval forward (median of 5)':<28} {'torch':>9} {'mindspore':>10} {'ms/torch':>9}")
    for variant in ("bn", "no-bn"):
        t, m = (float(python(EVAL_BN, str(args.size), args.backbone, b, variant)) for b in ("torch", "mindspore"))
        name = "with BatchNorm" if variant == "bn" else "BatchNorm folded (no BN)"
        print(f"{name:<28} {t:>7.0f}ms {m:>8.0f}ms {m / t:>9.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", choices=["conv-memory", "conv-kernels", "upsample", "compile-cache", "train-memory",
                                          "memory-reuse", "memory-options", "compile-time", "single-ops", "bn-fold"])
    parser.add_argument("--backbone", default="clip_vitb32_384")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--convs", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--shifted", action="store_true", help="conv-memory: also the shifted-sums variant (slow)")
    args = parser.parse_args(argv)
    defaults = {"conv-memory": 120, "conv-kernels": 60, "upsample": 120, "compile-cache": 128, "train-memory": 480,
                "memory-reuse": 0, "memory-options": 480, "compile-time": 64,
                "single-ops": 96, "bn-fold": 480}
    args.size = args.size or defaults[args.probe]
    {"conv-memory": conv_memory, "conv-kernels": conv_kernels, "upsample": upsample,
     "compile-cache": compile_cache, "train-memory": train_memory, "memory-reuse": memory_reuse,
     "memory-options": memory_options, "compile-time": compile_time,
     "single-ops": single_ops, "bn-fold": bn_fold}[args.probe](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
