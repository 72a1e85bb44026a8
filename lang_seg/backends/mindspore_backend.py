"""MindSpore backend: the ported LSegNet, compiled as graphs.

Weights come from a checkpoint (under torch names, mapped by ``lang_seg.names``)
or from the MindSpore net's own initialisation; ``lang_seg.load_model`` hands
over the torch reference's initial weights when both backends must start from
the same numbers (a seed, or pretrained CLIP/timm weights).
"""
from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..config import STAGES, NetOptions
from ..errors import LangSegError
from ..model import SegModel, check_images
from ..names import is_unused, ms_to_torch, torch_to_ms

_DEVICE: Dict[str, object] = {}
TEXT_CHUNK = 16


def parse_device(device: str) -> Tuple[str, int]:
    """'cpu', 'gpu', 'gpu:N', 'cuda', 'cuda:N' -> (MindSpore target, id)."""
    name, _, index = device.lower().partition(":")
    if name == "cpu":
        return "CPU", 0
    if name in ("gpu", "cuda"):
        try:
            return "GPU", int(index or 0)
        except ValueError:
            pass
    raise LangSegError(f"unknown device {device!r}: use 'cpu' or 'gpu:N'")


def cap_onednn_isa() -> None:
    """Cap oneDNN at AVX2 unless the user chose a cap.

    MindSpore 2.10's oneDNN (3.10) picks its ``jit_uni_ncsp:conv+ref`` kernel for
    plain-layout fp32 convolutions on AVX-512 CPUs: ~150x slower than the
    ``gemm:jit`` kernel it picks with AVX2 (3x3 conv, 256 channels, 96x96: 10.9 s
    against 63 ms on this machine). oneDNN reads the cap when it first runs, so
    this must happen before MindSpore's first kernel; torch's own oneDNN is
    affected only if it has not run yet (it loses 10-20% there).
    """
    if "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"


# MindSpore writes into the working directory unless told otherwise: rank_<id>/om/analyze_fail.ir when a graph
# fails to compile (MS_OM_PATH, read when it happens), graph dumps asked for with MS_DEV_SAVE_GRAPHS
# (MS_DEV_SAVE_GRAPHS_PATH), kernel_meta/ and the compile cache (MS_COMPILER_CACHE_PATH; the cache itself stays
# off: MS_COMPILER_CACHE_ENABLE, see the README's benchmarks)
ARTEFACT_PATHS = ("MS_OM_PATH", "MS_DEV_SAVE_GRAPHS_PATH", "MS_COMPILER_CACHE_PATH")


def cache_folder() -> str:
    """The per-user folder for MindSpore's own files: ``$XDG_CACHE_HOME/lang_seg/mindspore``
    (``~/.cache/lang_seg/mindspore``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lang_seg", "mindspore")


def artefacts_to_cache() -> None:
    """Send MindSpore's files to ``cache_folder()``, never the user's working directory; a path the user
    set stays theirs. Called before MindSpore's first use (``use_device``)."""
    folder = cache_folder()
    os.makedirs(folder, exist_ok=True)
    for name in ARTEFACT_PATHS:
        os.environ.setdefault(name, folder)


def gpu_problem() -> Optional[str]:
    """Why MindSpore cannot use an NVIDIA GPU here, or None when its GPU plugin loads."""
    import logging

    from mindspore import log

    logger = log._get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # MindSpore warns in several lines; the caller says it in one
    try:
        from mindspore.device_context.gpu.device import is_available

        if is_available():
            return None
    except Exception:  # plugin import itself fails without CUDA libraries
        pass
    finally:
        logger.setLevel(level)
    return ("its GPU plugin did not load: MindSpore 2.10 needs an NVIDIA driver with the CUDA 11.x runtime and "
            "cuDNN 8 libraries (libcudart.so.11.0, libcudnn.so.8) on LD_LIBRARY_PATH")


def use_device(device: str) -> None:
    """Select MindSpore's device once per process; a clear error when the GPU plugin cannot load."""
    target, index = parse_device(device)
    if target == "CPU":
        cap_onednn_isa()
    artefacts_to_cache()
    import mindspore as ms

    if _DEVICE:
        if (_DEVICE["target"], _DEVICE["id"]) != (target, index):
            raise LangSegError(
                f"MindSpore already runs on {_DEVICE['target']}:{_DEVICE['id']} in this process; "
                f"it cannot switch to {device!r}: start a new process"
            )
        return
    if target == "GPU":
        problem = gpu_problem()
        if problem:
            raise LangSegError(f"MindSpore cannot use {device!r}: {problem}; use device='cpu' otherwise")
    try:
        ms.set_device(target, index if target == "GPU" else None)
    except RuntimeError:
        # a kernel already ran (a conversion builds the net, saving makes tensors): MindSpore then stays
        # on the CPU it started on, which is only a problem when another device was asked for
        if target != "CPU" or ms.get_context("device_target") != "CPU":
            raise LangSegError(f"MindSpore already ran on the CPU in this process; it cannot switch to {device!r}: "
                               "start a new process") from None
    _DEVICE.update(target=target, id=index)


def compiler(mode: str):
    """``mode='graph'``: compile with ``mindspore.jit`` (level O1: 7% faster than O0 for a
    clip_vitb32_384 training step here); ``'eager'``: run op by op, for debugging."""
    import mindspore as ms

    if mode == "eager":
        return lambda fn: fn
    return lambda fn: ms.jit(fn, jit_level="O1")


def named_parameters(net) -> Iterator[Tuple[str, object]]:
    """(path, Parameter) for every parameter of a MindSpore cell, buffers (BN statistics) included."""
    return net.parameters_and_names()


def ms_parameter_shapes(options: NetOptions) -> List[Tuple[str, tuple]]:
    from lang_seg.modules.models_ms.lseg_net_zs import build_net

    return [(name, tuple(p.shape)) for name, p in named_parameters(build_net(options))]


def assign(param, value) -> None:
    """Write ``value`` into ``param`` in place. ``Parameter.set_data`` rebinds the parameter to new memory,
    which graphs compiled before keep ignoring (measured: MindSpore 2.10, CPU); an eager ``assign`` writes
    the memory they read."""
    import mindspore as ms
    from mindspore import ops

    # mindspore.from_numpy shares the array's memory (Tensor.from_numpy and dtype_to_nptype are deprecated in
    # 2.10, the latter warning on every call); a dtype the parameter lacks (upstream's float16) is cast
    value = ms.from_numpy(np.ascontiguousarray(value).reshape(param.shape))
    ops.assign(param, value if value.dtype == param.dtype else value.astype(param.dtype))


def load_into(net, ms_state: Dict[str, np.ndarray]) -> None:
    """Every parameter of ``net`` from ``ms_state`` (MindSpore names), written in place (``assign``): right
    at any time, compiled graphs included."""
    for name, param in named_parameters(net):
        assign(param, ms_state[name])


def load_fresh(net, ms_state: Dict[str, np.ndarray]) -> None:
    """``ms_state`` into a net no graph has compiled yet, through MindSpore's own loader (strict: every
    parameter loaded, each of its dtype); it rebinds the parameters' memory, which is why later writes go
    through ``load_into``."""
    import mindspore as ms

    # MindSpore's loader matches ``Parameter.name`` (set as cells are built, not always the full path)
    names = {path: param.name for path, param in named_parameters(net)}
    if len(set(names.values())) != len(names):
        raise LangSegError("two parameters of the MindSpore net share a name: MindSpore's loader cannot tell them apart")
    params = {}
    for path, param in named_parameters(net):
        value = ms.from_numpy(np.ascontiguousarray(ms_state[path]))
        # a dtype the net does not use (upstream stores CLIP's weights in float16) is cast, as torch's load does
        value = value if value.dtype == param.dtype else value.astype(param.dtype)
        params[names[path]] = ms.Parameter(value, name=names[path])
    missing, unused = ms.load_param_into_net(net, params, strict_load=True)
    if missing or unused:
        raise LangSegError(f"MindSpore left {(missing or unused)[0]} unloaded: the weights do not fit the network")


def text_inputs(labels: List[str], context_length: int):
    """CLIP token ids (int32) and the end-of-text position of each label."""
    from ..labels import tokenize

    tokens = tokenize(labels, context_length).numpy()
    return tokens.astype(np.int32), tokens.argmax(axis=-1).astype(np.int32)


class MindSporeModel(SegModel):
    backend = "mindspore"

    def __init__(self, options: NetOptions, device: str = "cpu", state: Optional[Dict[str, np.ndarray]] = None,
                 what: str = "checkpoint", mode: Optional[str] = None):
        """``state``: weights under torch names; None keeps the MindSpore net's own random initialisation."""
        from lang_seg.modules.models_ms.lseg_net_zs import build_net  # LSegNet, or a zero-shot net

        use_device(device)
        super().__init__(options, device)
        self.mode = mode or os.environ.get("LANGSEG_MS_MODE", "graph")
        if self.mode not in ("graph", "eager"):
            raise LangSegError(f"unknown MindSpore mode {self.mode!r}: use 'graph' (compiled) or 'eager' (debugging)")
        self.net = build_net(options)
        self.torch_only: Dict[str, np.ndarray] = {}
        if state is not None:
            load_fresh(self.net, self._ms_state(state, what))
        self.net.set_train(False)

        net = self.net

        def forward(x, text_features):
            return net(x, text_features)

        def forward_stages(x, text_features):
            return net.forward_stages(x, text_features)

        def encode_text(tokens, eot):
            return net.clip_pretrained(tokens, eot)

        def pixel_embeddings(x):
            return net.pixel_embeddings(x)

        compile_ = compiler(self.mode)
        self._compiled_forward = compile_(forward)
        self._compiled_stages = compile_(forward_stages)
        self._compiled_text = compile_(encode_text)
        self._compiled_pixels = compile_(pixel_embeddings)

    def _ms_state(self, state: Dict[str, np.ndarray], what: str) -> Dict[str, np.ndarray]:
        """``state`` (torch names) under MindSpore's names, checked strictly (a missing, unexpected or misshapen
        tensor is an error naming it); tensors only torch has are kept for ``state_dict``."""
        shapes = [(name, tuple(p.shape)) for name, p in named_parameters(self.net)]
        ms_state, self.torch_only = torch_to_ms(state, shapes, self.options, what)
        self.unused_keys = sorted(k for k in self.torch_only if is_unused(k))
        return ms_state

    def load_state(self, state: Dict[str, np.ndarray], what: str = "checkpoint") -> None:
        """Weights under torch names into the live net, in place (compiled graphs read that memory)."""
        load_into(self.net, self._ms_state(state, what))

    def ms_state(self) -> Dict[str, np.ndarray]:
        return {name: p.asnumpy() for name, p in named_parameters(self.net)}

    def state_dict(self) -> Dict[str, np.ndarray]:
        return ms_to_torch(self.ms_state(), self.torch_only)

    def _encode_text(self, labels: List[str]):
        """Text features in fixed chunks of ``TEXT_CHUNK`` labels: one compiled shape for any label
        count, and bounded memory (MindSpore's CPU graphs keep every intermediate alive:
        150 ADE20K labels in one call took 13 GB)."""
        import mindspore as ms
        from mindspore import ops

        tokens, eot = text_inputs(labels, self.net.clip_pretrained.context_length)
        pad = (-len(labels)) % TEXT_CHUNK
        if pad:  # repeat the last label; its rows are dropped below
            tokens = np.concatenate([tokens, np.repeat(tokens[-1:], pad, axis=0)])
            eot = np.concatenate([eot, np.repeat(eot[-1:], pad, axis=0)])
        chunks = [
            self._compiled_text(ms.Tensor(tokens[i:i + TEXT_CHUNK]), ms.Tensor(eot[i:i + TEXT_CHUNK]))
            for i in range(0, len(tokens), TEXT_CHUNK)
        ]
        return ops.cat(chunks)[: len(labels)]

    def forward_tensor(self, images, text_features):
        """The compiled eval forward on MindSpore tensors: ``(N, 3, H, W)`` -> ``(N, L, H, W)``."""
        self.net.set_train(False)
        return self._compiled_forward(images, text_features)

    def _forward(self, images: np.ndarray, text_features) -> np.ndarray:
        import mindspore as ms

        return self.forward_tensor(ms.from_numpy(images), text_features).asnumpy()

    def _pixel_embeddings(self, images: np.ndarray) -> np.ndarray:
        import mindspore as ms

        self.net.set_train(False)
        return self._compiled_pixels(ms.from_numpy(images)).asnumpy()

    def _normalized_text(self, text_features) -> np.ndarray:
        return self.net.unit_rows(text_features).asnumpy()

    def forward_stages(self, images: np.ndarray, labels) -> Dict[str, np.ndarray]:
        """Every stage of ``lang_seg.config.STAGES`` as numpy arrays (eval mode)."""
        import mindspore as ms

        images = check_images(images, self.patch_size)
        outs = self._compiled_stages(ms.from_numpy(images), self.text_features(labels))
        return {name: outs[name].asnumpy() for name in STAGES}

