"""``Conv2d``: MindSpore's ``nn.Conv2d`` computed by oneDNN's direct blocked kernels, as MindSpore operators.

MindSpore 2.10's CPU convolution runs oneDNN's im2col + GEMM kernel on plain
NCHW memory and every convolution primitive of a compiled graph keeps its
im2col scratchpad for the life of the graph (docs/mindspore-conv.md). This
``Conv2d`` is ``nn.Conv2d`` (the same parameters ``weight``/``bias``, shapes,
initialisation and names, so checkpoints and the name map are untouched) whose
``construct`` calls AOT custom operators (``ops.Custom(func_type="aot")``) on
oneDNN's direct kernels with blocked layouts and the scratchpad in the
workspace MindSpore hands each launch: a forward operator and, through
``bprop``, one operator for the input and weight (and bias) gradients. They stay
operators of MindSpore's compiled graph.

``LANGSEG_MS_CONV``: ``onednn`` requires the kernels (an error says why they
cannot run), ``native`` uses ``nn.Conv2d``, unset uses the kernels when they
build, load and pass their self-check, else ``nn.Conv2d`` with one line on
stderr saying why (once per process). Only configurations the kernel exports
run on it (CPU, float32, dilation 1, one group, stride and symmetric padding
among ``CONFIGS``); any other is an ordinary ``nn.Conv2d``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Dict, Optional, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.ops import CustomRegOp, DataType

from lang_seg.errors import LangSegError

from . import onednn_build

CONFIGS = ((1, 0), (1, 1), (2, 1))  # (stride, padding) pairs csrc/onednn_conv.cc exports
# blocked layouts pad channels to blocks of 8 (AVX2) or 16 (AVX-512): a 1-channel map (the depthwise head
# block's) would take 8-16x its memory, so narrow convolutions stay nn.Conv2d
MIN_CHANNELS = 8
ENV = "LANGSEG_MS_CONV"
SELF_CHECK_RTOL = 1e-5
CHILD_TIMEOUT_S = 300


class Kernels:
    """The loaded library and one forward operator per (stride, padding, bias), shared by every cell."""

    def __init__(self, library):
        self.path = str(library)
        self.lib = onednn_build.load(library)
        self._ops: Dict[Tuple[int, int, bool], object] = {}

    def forward(self, stride: int, padding: int, bias: bool):
        key = (stride, padding, bias)
        if key not in self._ops:
            self._ops[key] = _forward_op(self.path, stride, padding, bias)
        return self._ops[key]


def _reg_info(name: str, inputs, outputs):
    """CPU, float32; the output count tells MindSpore the backward operator has several outputs."""
    reg = CustomRegOp(name)
    for i, input_name in enumerate(inputs):
        reg = reg.input(i, input_name)
    for i, output_name in enumerate(outputs):
        reg = reg.output(i, output_name)
    return reg.dtype_format(*[DataType.F32_Default] * (len(inputs) + len(outputs))).target("CPU").get_op_info()


def _forward_op(path: str, stride: int, padding: int, bias: bool):
    """``(x, w[, b]) -> y``; its ``bprop`` returns ``(dx, dw[, db])`` from one backward operator. Output shapes
    and dtypes come from the library's InferShape/InferType functions (no out_shape/out_dtype): MindSpore
    re-infers some graphs at run time in C++, where a Python callable cannot be asked."""
    name = f"lsconv_fwd{'_bias' if bias else ''}_s{stride}p{padding}"
    grad_name = f"lsconv_bwd{'_bias' if bias else ''}_s{stride}p{padding}"
    backward = ops.Custom(f"{path}:{grad_name}", func_type="aot",
                          reg_info=_reg_info(grad_name, ("dy", "x", "w"), ("dx", "dw", "db")[:3 if bias else 2]))
    if bias:
        def bprop(x, w, b, out, dout):
            return backward(dout, x, w)
    else:
        def bprop(x, w, out, dout):
            return backward(dout, x, w)
    return ops.Custom(f"{path}:{name}", func_type="aot", bprop=bprop,
                      reg_info=_reg_info(name, ("x", "w", "b")[:3 if bias else 2], ("y",)))


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


def self_check(kernels: Kernels) -> None:
    """Forward, input, weight and bias gradients of every exported configuration against ``nn.Conv2d`` on a
    small shape (batch 2, odd sizes); Unavailable naming the first that differs by more than 1e-5 relative."""
    rng = np.random.RandomState(0)
    x = ms.Tensor(rng.randn(2, 8, 11, 9).astype(np.float32))
    for stride, padding in CONFIGS:
        kernel = 1 if padding == 0 else 3
        reference = nn.Conv2d(8, 16, kernel, stride=stride, pad_mode="pad", padding=padding, has_bias=True)
        op = kernels.forward(stride, padding, True)
        shape = reference(x).shape
        r = ms.Tensor(rng.randn(*shape).astype(np.float32))  # a loss whose gradient differs per element

        def ours(x, w, b):
            return (op(x, w, b) * r).sum()

        def theirs(x, w, b):
            return (reference(x) * r).sum()

        params = (reference.weight, reference.bias)
        try:
            got = (op(x, *params), *ms.grad(ours, (0, 1, 2))(x, *params))
        except Exception as exc:  # noqa: BLE001 (the kernel returned an error, MindSpore raised: fall back)
            why = kernels.lib.lsconv_last_error().decode() or (str(exc).strip().splitlines() or [repr(exc)])[0]
            raise onednn_build.Unavailable(f"self-check: the kernel failed ({why})") from None
        want = (reference(x), *ms.grad(theirs, (0, 1, 2))(x, *params))
        for name, a, b in zip(("forward", "input gradient", "weight gradient", "bias gradient"), got, want):
            error = relative_error(a.asnumpy(), b.asnumpy())
            if not error <= SELF_CHECK_RTOL:
                raise onednn_build.Unavailable(f"self-check: {name} (stride {stride}, padding {padding}) differs "
                                               f"from nn.Conv2d by {error:.1e} relative")


def checked_library():
    """The built library, once it has passed the self-check in a child process: the first process to use a new
    build runs it there, so that a kernel which crashes costs one line here, not this process. The verdict is
    kept beside the library."""
    library = onednn_build.build()
    verdict = library.with_name("self-check.txt")
    with onednn_build.locked(library.parent):
        if not verdict.is_file():
            verdict.write_text(_check_in_child(library) + "\n")
    text = verdict.read_text().strip()
    if text != "ok":
        raise onednn_build.Unavailable(f"{text} (cached; remove {library.parent} to retry)")
    return library


def _check_in_child(library) -> str:
    from lang_seg.checkout import ROOT as root  # the folder the package imports from (a checkout or site-packages)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    code = f"import sys; from {__name__} import child_check; sys.exit(child_check(sys.argv[1]))"
    try:
        result = subprocess.run([sys.executable, "-c", code, str(library)], capture_output=True, text=True, env=env,
                                timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"self-check: the checking process did not finish in {CHILD_TIMEOUT_S} s"
    if result.returncode < 0:
        return f"self-check: the kernel crashed the checking process (signal {-result.returncode})"
    lines = result.stdout.strip().splitlines()
    if result.returncode or not lines:
        return lines[-1] if lines else f"self-check: the checking process failed: {result.stderr.strip()[-300:]}"
    return lines[-1]


def child_check(library: str) -> int:
    """In the checking process: print ``ok`` or why not."""
    try:
        self_check(Kernels(library))
    except onednn_build.Unavailable as exc:
        print(exc)
        return 1
    print("ok")
    return 0


_lock = threading.Lock()
_state: Dict[str, object] = {}


def mode() -> str:
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in ("auto", "onednn", "native"):
        raise LangSegError(f"{ENV}={value!r}: use 'onednn' (the oneDNN kernels), 'native' (nn.Conv2d) or unset")
    return value


def _decide(wanted: str) -> Tuple[Optional[Kernels], Optional[str], bool]:
    """``(kernels or None, why not, whether to say why on stderr)``."""
    if wanted == "native":
        return None, f"{ENV}=native", False
    target = ms.get_context("device_target")
    if target != "CPU":  # expected, nothing to say
        return None, f"they are CPU kernels and MindSpore runs on {target}", False
    try:
        found = Kernels(checked_library())
        self_check(found)
        return found, None, False
    except onednn_build.Unavailable as exc:
        return None, str(exc), True


def kernels() -> Optional[Kernels]:
    """The kernels for this process, or None for ``nn.Conv2d`` (decided once per process and mode)."""
    wanted = mode()
    with _lock:
        if _state.get("mode") != wanted:
            found, why, say = _decide(wanted)
            _state.update(mode=wanted, kernels=found, why=why, say=say)
        if _state["kernels"] is None and wanted == "onednn":
            raise LangSegError(f"{ENV}=onednn, but the oneDNN convolution cannot run: {_state['why']}")
        if _state["say"]:  # once per process
            _state["say"] = False
            print(f"lang_seg: MindSpore convolutions run as nn.Conv2d: {_state['why']}", file=sys.stderr, flush=True)
        return _state["kernels"]


def _symmetric_padding(padding) -> Optional[int]:
    values = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    return values[0] if len(set(values)) == 1 else None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` computed by the oneDNN operators where this process has them (see the module)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, pad_mode: str = "same",
                 padding=0, dilation=1, group: int = 1, has_bias: bool = False, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode=pad_mode, padding=padding,
                         dilation=dilation, group=group, has_bias=has_bias, **kwargs)
        self.onednn = self._operator()

    def _operator(self):
        pad = _symmetric_padding(self.padding) if self.pad_mode in ("pad", "valid") else None
        if self.pad_mode == "valid":
            pad = 0
        stride = set(self.stride[2:] if len(self.stride) == 4 else self.stride)
        fits = (pad is not None and len(stride) == 1 and (stride.pop(), pad) in CONFIGS
                and set(self.dilation[2:] if len(self.dilation) == 4 else self.dilation) == {1}
                and self.group == 1 and self.data_format == "NCHW" and self.weight.dtype == ms.float32
                and min(self.in_channels, self.out_channels) >= MIN_CHANNELS
                and self.kernel_size[0] == self.kernel_size[1])
        found = kernels() if fits else None
        if found is None:
            return None
        return found.forward(self.stride[-1], pad, self.has_bias)

    def construct(self, x):
        if self.onednn is None:
            return super().construct(x)
        if self.has_bias:
            return self.onednn(x, self.weight, self.bias)
        return self.onednn(x, self.weight)
