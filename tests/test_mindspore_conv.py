"""The oneDNN convolution operators (modules/models_ms/onednn_conv.py): numbers against nn.Conv2d, the kernel
oneDNN runs, the thread pool, and every way they can fail to build or load (one line, then nn.Conv2d)."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from lang_seg.backends.mindspore_backend import cap_onednn_isa
from lang_seg.errors import LangSegError
from lang_seg.modules.models_ms import onednn_build, onednn_conv
from lang_seg.modules.models_ms.onednn_conv import Conv2d

# the cap the MindSpore backend sets before its first kernel: without it, on AVX-512 CPUs, nn.Conv2d (the
# reference here) runs oneDNN's reference-grade kernel (10 s for one 768-channel 12x15 forward)
cap_onednn_isa()

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-5
PREFIX = "lang_seg: MindSpore convolutions run as nn.Conv2d: "

# (cin, cout, kernel, stride, padding, bias): the DPT decoder's convolutions. layerN_rn: 3x3 projections of
# the reassembled maps (clip_vitb32_384: 96, 192, 384, 768 channels; clip_vitl16_384: 256 ... 1024) to 256
# features, no bias; resConfUnit conv1/conv2: 256 -> 256 3x3 with bias (without BatchNorm) or without;
# out_conv and head1: 1x1; clip_vitl16_384's act_postprocess4 resampling: 3x3 stride 2.
DECODER = {
    "layer1_rn": (96, 256, 3, 1, 1, False),
    "layer4_rn": (768, 256, 3, 1, 1, False),
    "resConfUnit": (256, 256, 3, 1, 1, True),
    "out_conv 1x1": (256, 256, 1, 1, 0, True),
    "head1 1x1": (256, 512, 1, 1, 0, True),
    "resample stride 2": (64, 64, 3, 2, 1, True),
}


@pytest.fixture(scope="module")
def loaded():
    """The kernels as every test process gets them: they must build, load and pass their self-check here."""
    os.environ.pop(onednn_conv.ENV, None)
    found = onednn_conv.kernels()
    assert found is not None, "the oneDNN convolution did not build or load (its one line on stderr says why)"
    return found


def pair(cin, cout, kernel, stride, padding, bias):
    ours = Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=padding, has_bias=bias)
    theirs = nn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=padding, has_bias=bias)
    rng = np.random.RandomState(cin + cout)
    for mine, other in zip(ours.get_parameters(), theirs.get_parameters()):
        ops.assign(mine, ms.Tensor(rng.uniform(-0.1, 0.1, mine.shape).astype(np.float32)))
        ops.assign(other, mine)
    return ours, theirs


def forward_and_gradients(cell, x, r):
    """``[y, dx, dw(, db)]`` of ``sum(cell(x) * r)``, compiled as the training step compiles them."""

    def loss(x):
        return (cell(x) * r).sum()

    _, (dx, dparams) = ms.jit(ms.value_and_grad(loss, 0, cell.trainable_params()), jit_level="O1")(x)
    return [cell(x).asnumpy(), dx.asnumpy(), *(g.asnumpy() for g in dparams)]


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_against_nn_conv2d(shape, batch, size):
    ours, theirs = pair(*shape)
    assert ours.onednn is not None
    rng = np.random.RandomState(0)
    x = ms.Tensor(rng.randn(batch, shape[0], *size).astype(np.float32))
    out = theirs(x).shape
    r = ms.Tensor(rng.randn(*out).astype(np.float32))
    names = ["forward", "input gradient", "weight gradient", "bias gradient"]
    for name, a, b in zip(names, forward_and_gradients(ours, x, r), forward_and_gradients(theirs, x, r)):
        assert a.shape == b.shape, name
        assert relative(a, b) <= RTOL, (name, relative(a, b))


@pytest.mark.parametrize("name", DECODER)
def test_forward_and_gradients_match_nn_conv2d_at_the_decoders_shapes(loaded, name):
    check_against_nn_conv2d(DECODER[name], batch=2, size=(12, 15))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["layer1_rn", "resConfUnit"])
def test_forward_and_gradients_match_nn_conv2d_at_a_real_decoder_size(loaded, name):
    # clip_vitb32_384 at 480: layer_1 is 96 x 120 x 120, the finest fusion block runs at 120 x 120
    check_against_nn_conv2d(DECODER[name], batch=1, size=(120, 120))


VERBOSE = """
import numpy as np, mindspore as ms
from mindspore import nn
from lang_seg.modules.models_ms.onednn_conv import Conv2d
x = ms.Tensor(np.random.RandomState(0).randn(1, 40, 20, 20).astype(np.float32))
for cell in (Conv2d(40, 24, 3, pad_mode="pad", padding=1, has_bias=True),
             nn.Conv2d(40, 32, 3, pad_mode="pad", padding=1, has_bias=True)):
    def loss(x):
        return (cell(x) ** 2).sum()
    ms.jit(ms.value_and_grad(loss, 0, cell.trainable_params()))(x)[0].asnumpy()
"""


def convolution_kernels(verbose: str):
    """``{problem: {(propagation, implementation, source layout)}}`` from oneDNN's verbose execution lines."""
    found = {}
    for line in verbose.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields and "convolution" in fields:
            i = fields.index("convolution")
            src = fields[i + 3].split()[0].split(":")  # src:f32:a:blocked:aBcd8b::f0
            found.setdefault(fields[-2], set()).add((fields[i + 2], fields[i + 1], src[4]))
    return found


def test_onednn_verbose_shows_the_direct_blocked_kernel(loaded, tmp_path):
    # the ISA cap the MindSpore backend sets (lang_seg.backends.mindspore_backend.cap_onednn_isa)
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "LANGSEG_MS_CONV": "onednn", "ONEDNN_MAX_CPU_ISA": "AVX2",
           "PYTHONPATH": str(ROOT)}
    script = tmp_path / "verbose.py"  # MindSpore compiles graphs from source files only
    script.write_text(VERBOSE)
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    kernels = convolution_kernels(result.stdout)
    ours = [v for k, v in kernels.items() if k.startswith("mb1_ic40oc24_")]
    native = [v for k, v in kernels.items() if k.startswith("mb1_ic40oc32_")]
    assert ours and native, sorted(kernels)
    props = {prop for prop, _, _ in ours[0]}
    assert props == {"forward_training", "backward_data", "backward_weights"}, ours
    for prop, impl, layout in ours[0]:
        assert impl.startswith(("jit:", "brg")) and "gemm" not in impl, (prop, impl)
        assert layout != "abcd", (prop, impl, layout)  # blocked (aBcd8b / aBcd16b), not plain NCHW
    # what MindSpore's own convolution gets for the same problem (so this parse tells the two apart)
    assert any("gemm" in impl for _, impl, _ in native[0]), native


@pytest.mark.parametrize("isa", ["ALL", "AVX2"])
def test_the_self_check_passes_with_and_without_the_isa_cap(loaded, isa):
    """Uncapped, oneDNN picks its AVX-512 kernels where the CPU has them (the backend caps it at AVX2)."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa, "PYTHONPATH": str(ROOT)}
    code = f"import sys; from lang_seg.modules.models_ms.onednn_conv import child_check; sys.exit(child_check({loaded.path!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert (result.returncode, result.stdout.strip().splitlines()[-1:]) == (0, ["ok"]), result.stderr[-2000:]


def test_the_kernel_computes_on_every_core(loaded):
    lib = loaded.lib
    lib.lsconv_worker_tasks.restype = ctypes.c_uint64
    cores = len(os.sched_getaffinity(0))
    assert lib.lsconv_threads() == cores
    if cores == 1:
        pytest.skip("one core: nothing to share")
    before = lib.lsconv_worker_tasks()
    check_against_nn_conv2d(DECODER["resConfUnit"], batch=1, size=(24, 24))
    # oneDNN handed work to the pool's workers, not only to the calling thread
    assert lib.lsconv_worker_tasks() > before


def test_the_decoder_runs_on_the_operators_and_the_depthwise_head_does_not(loaded):
    from lang_seg.config import NetOptions
    from lang_seg.modules.models_ms.lseg_net import LSegNet

    net = LSegNet(NetOptions("tiny_vitb32", arch_option=2, block_depth=1))
    s = net.scratch
    convs = [s.layer1_rn, s.layer2_rn, s.layer3_rn, s.layer4_rn] + [
        getattr(getattr(getattr(s, f"refinenet{i}"), unit), conv) for i in range(1, 5)
        for unit in ("resConfUnit1", "resConfUnit2") for conv in ("conv1", "conv2")]
    assert all(c.onednn is not None for c in convs)
    assert s.head_block.depthwise.depthwise.onednn is None  # 1 channel: blocked layouts would pad it 8-fold
    names = {name for name, _ in net.parameters_and_names()}
    assert {"scratch.layer1_rn.weight", "scratch.refinenet1.resConfUnit1.conv1.weight"} <= names


# ---- falling back: one line on stderr, then nn.Conv2d, never a crash ----

@pytest.fixture
def fresh(monkeypatch):
    """A process that has not decided yet (the module decides once per process)."""
    monkeypatch.setattr(onednn_conv, "_state", {})
    monkeypatch.delenv(onednn_conv.ENV, raising=False)


@pytest.fixture
def empty_cache(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("LANGSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def falls_back_with_one_line(capsys, reason: str):
    """Two convolutions are built and run as nn.Conv2d; stderr holds exactly one line, which names ``reason``."""
    cells = [pair(8, 16, 3, 1, 1, True) for _ in range(2)]
    x = ms.Tensor(np.random.RandomState(0).randn(1, 8, 9, 9).astype(np.float32))
    for ours, theirs in cells:
        assert ours.onednn is None
        np.testing.assert_array_equal(ours(x).asnumpy(), theirs(x).asnumpy())
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and reason in lines[0], lines


def test_forced_native_is_nn_conv2d_without_a_word(fresh, monkeypatch, capsys):
    monkeypatch.setenv(onednn_conv.ENV, "native")
    ours, theirs = pair(8, 16, 3, 1, 1, True)
    assert ours.onednn is None
    x = ms.Tensor(np.ones((1, 8, 5, 5), np.float32))
    np.testing.assert_array_equal(ours(x).asnumpy(), theirs(x).asnumpy())
    assert capsys.readouterr().err == ""


def test_no_compiler(empty_cache, monkeypatch, capsys):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    falls_back_with_one_line(capsys, "no C++ compiler (/nonexistent/c++ not found")


def test_no_headers(empty_cache, monkeypatch, capsys):
    monkeypatch.setattr(onednn_build, "installed_headers", lambda: [])
    falls_back_with_one_line(capsys, "no oneDNN headers for MindSpore's oneDNN 3.")


def fake_compiler(folder: Path) -> Path:
    """A compiler that reports an error and counts its compile calls."""
    script = folder / "fake-c++"
    script.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "fake c++ 1.0"; exit 0; }\n'
                      f'echo x >> {folder / "calls"}\necho "onednn_conv.cc:1:1: error: simulated" >&2\nexit 1\n')
    script.chmod(0o755)
    return script


def test_a_compile_error_is_one_line_and_remembered(empty_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXX", str(fake_compiler(tmp_path)))
    falls_back_with_one_line(capsys, "compiling the oneDNN convolution failed: onednn_conv.cc:1:1: error: simulated")
    monkeypatch.setattr(onednn_conv, "_state", {})  # the next process
    falls_back_with_one_line(capsys, "(cached; remove ")
    assert (tmp_path / "calls").read_text().count("x") == 1  # not compiled again


def test_a_version_mismatch(fresh, monkeypatch, capsys):
    real = onednn_build.check_versions
    monkeypatch.setattr(onednn_build, "check_versions", lambda built, runtime, cpu: real(31100, runtime, cpu))
    falls_back_with_one_line(capsys, "oneDNN version mismatch: the kernel was built for 3.11.0, MindSpore loads 3.")


def test_version_rules():
    threadpool = onednn_build.THREADPOOL
    for built in (30200, 30901, 31001):  # older headers of the same major: oneDNN's C API is backward compatible
        onednn_build.check_versions(built, 31001, threadpool)
    for built in (31100, 20603, 40000):
        with pytest.raises(onednn_build.Unavailable, match="version mismatch"):
            onednn_build.check_versions(built, 31001, threadpool)
    with pytest.raises(onednn_build.Unavailable, match="not THREADPOOL"):
        onednn_build.check_versions(31001, 31001, 0x2)  # an OpenMP build would ignore the kernel's pool


def test_a_wrong_kernel_fails_the_self_check(fresh, monkeypatch, capsys):
    real = onednn_conv.Kernels.forward

    def off_by_a_little(self, stride, padding, bias):
        op = real(self, stride, padding, bias)
        return lambda *args: op(*args) * 1.0001

    monkeypatch.setattr(onednn_conv.Kernels, "forward", off_by_a_little)
    falls_back_with_one_line(capsys, "self-check: forward (stride 1, padding 0) differs from nn.Conv2d by 1.0e-04")


def test_a_library_that_does_not_load(empty_cache, tmp_path, monkeypatch, capsys):
    bogus = tmp_path / "lib" / onednn_build.LIBRARY
    bogus.parent.mkdir()
    bogus.write_text("not a shared library")
    monkeypatch.setattr(onednn_build, "build", lambda: bogus)
    falls_back_with_one_line(capsys, "the oneDNN convolution library does not load")


def test_a_kernel_that_crashes_is_checked_in_another_process(empty_cache, tmp_path, monkeypatch, capsys):
    cxx, _ = onednn_build.compiler()
    crashing = tmp_path / "lib" / onednn_build.LIBRARY
    crashing.parent.mkdir()
    source = tmp_path / "crash.c"
    source.write_text("#include <signal.h>\n__attribute__((constructor)) static void boom(void) { raise(SIGSEGV); }\n")
    subprocess.run([cxx, "-x", "c", "-shared", "-fPIC", str(source), "-o", str(crashing)], check=True)
    monkeypatch.setattr(onednn_build, "build", lambda: crashing)
    falls_back_with_one_line(capsys, "self-check: the kernel crashed the checking process (signal 11)")


def test_forced_onednn_that_cannot_run_is_an_error(empty_cache, monkeypatch):
    monkeypatch.setenv(onednn_conv.ENV, "onednn")
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.raises(LangSegError, match="LANGSEG_MS_CONV=onednn, but the oneDNN convolution cannot run: no C"):
        Conv2d(8, 16, 3, pad_mode="pad", padding=1)


def test_an_unknown_mode_is_an_error(fresh, monkeypatch):
    monkeypatch.setenv(onednn_conv.ENV, "fast")
    with pytest.raises(LangSegError, match="LANGSEG_MS_CONV='fast': use 'onednn'"):
        Conv2d(8, 16, 3, pad_mode="pad", padding=1)


def test_the_aot_extra_layout_check(tmp_path):
    header = tmp_path / "custom_aot_extra.h"
    good = ("class AotExtra {\n public:\n  void SetWorkSpace(const std::vector<size_t> &w) { workspace_ = w; }\n"
            " private:\n  virtual bool GetAttrBool(std::string name) = 0;\n  std::vector<size_t> workspace_;\n\n"
            "  AotKernelData *kernel_data_{nullptr};\n};\n")
    header.write_text(good)
    onednn_build.check_aot_extra_layout(header)
    header.write_text(good.replace(" private:\n", " private:\n  int version_;\n"))
    with pytest.raises(onednn_build.Unavailable, match="no longer starts with its workspace vector"):
        onednn_build.check_aot_extra_layout(header)
    onednn_build.check_aot_extra_layout()  # the installed MindSpore's


def test_the_build_lock_lets_one_process_in_at_a_time(tmp_path):
    inside, overlaps = [], []

    def hold():
        with onednn_build.locked(tmp_path):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


FALLBACK_RUN = """
import numpy as np, lang_seg
model = lang_seg.load_model(None, backend="mindspore", backbone="tiny_vitb32")
print(model.logits(np.zeros((1, 3, 64, 64), np.float32), ["cat", "dog"]).shape)
"""


def test_a_model_without_a_compiler_runs_and_says_so_once(tmp_path):
    env = {**os.environ, "CXX": "/nonexistent/c++", "LANGSEG_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop(onednn_conv.ENV, None)
    result = subprocess.run([sys.executable, "-c", FALLBACK_RUN], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "(1, 2, 64, 64)"
    ours = [line for line in result.stderr.splitlines() if line.startswith("lang_seg")]
    assert ours == [PREFIX + "no C++ compiler (/nonexistent/c++ not found; apt-get install g++)"], ours
