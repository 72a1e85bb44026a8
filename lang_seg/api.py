"""``lang_seg.load_model``: one entry point for both backends."""
from __future__ import annotations

import warnings
from typing import Optional

from typing import Dict

import numpy as np

from .checkpoint import Checkpoint, infer_options, read_checkpoint
from .config import BACKBONES, BACKENDS, NetOptions, check_backend
from .errors import LangSegError
from .model import SegModel

__all__ = ["load_model", "initial_state", "BACKENDS"]


def initial_state(options: NetOptions, pretrained: bool = False, seed: Optional[int] = None) -> Dict[str, np.ndarray]:
    """The torch reference's initial weights (random from ``seed``, or CLIP/timm's pretrained ones) under
    torch names: what both backends start from, so that one seed gives identical weights on either."""
    import torch

    from lang_seg.modules.models.lseg_net_zs import build_net

    if seed is not None:
        torch.manual_seed(seed)
    net = build_net(options, pretrained=pretrained)
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def load_model(
    weights: Optional[str] = None,
    backend: str = "torch",
    backbone: Optional[str] = None,
    device: str = "cpu",
    pretrained: bool = False,
    seed: Optional[int] = None,
    ms_mode: Optional[str] = None,
    trust: bool = False,
    **options,
) -> SegModel:
    """Build LSeg on ``backend`` from a checkpoint, or with random weights.

    weights: a lang-seg Lightning checkpoint (upstream's or this project's), a
        MindSpore checkpoint written by this project, a ``Checkpoint`` already read
        (``lang_seg.checkpoint.read_checkpoint``), or None (random weights;
        ``backbone`` is then required). Upstream's zero-shot checkpoints (LSegNetZS,
        LSegRNNetZS) load too: score an image on ``["others", class]``.
    backbone: overrides the backbone the checkpoint implies.
    device: 'cpu', 'cuda'/'gpu' or 'gpu:N'.
    pretrained: with ``weights=None``, start from CLIP and timm's pretrained
        weights (downloads them, or reads their caches).
    seed: with ``weights=None``, seed the random initialisation; both backends
        start from the torch reference's initial weights (``initial_state``), so
        the same seed gives the same weights on either.
    ms_mode: MindSpore execution, 'graph' (compiled, the default) or 'eager'
        (debugging); the environment variable LANGSEG_MS_MODE sets the default.
    trust: load a torch checkpoint that holds objects other than tensors, numbers and strings
        (unpickling them may run code: only for files whose source you trust).
    options: other network options (features, readout, use_bn, arch_option,
        block_depth, activation, half_logits, zero_shot), overriding the checkpoint's.
    """
    check_backend(backend)
    unknown = set(options) - set(NetOptions.__dataclass_fields__)
    if unknown:
        raise LangSegError(f"unknown option(s) {', '.join(sorted(unknown))}: known are {', '.join(NetOptions.__dataclass_fields__)}")
    if backbone is not None and backbone not in BACKBONES:
        raise LangSegError(f"unknown backbone '{backbone}': choose one of {', '.join(BACKBONES)}")

    if weights is None:
        if backbone is None:
            raise LangSegError("pass backbone=... when weights=None (random initialisation), e.g. 'clip_vitb32_384'")
        net_options = NetOptions(backbone=backbone, **options)
        state = initial_state(net_options, pretrained, seed)
        what = "initial weights"
    else:
        ckpt = weights if isinstance(weights, Checkpoint) else read_checkpoint(weights, trust)
        net_options = infer_options(ckpt.state, ckpt.hyper_parameters, backbone=backbone, **options)
        state = ckpt.state
        what = f"checkpoint {ckpt.path or weights}"

    if backend == "torch":
        from .backends.torch_backend import TorchModel

        model = TorchModel(net_options, device, state=state, what=what)
    else:
        from .backends.mindspore_backend import MindSporeModel

        model = MindSporeModel(net_options, device, state=state, what=what, mode=ms_mode)
    if model.unused_keys:
        warnings.warn(
            f"{len(model.unused_keys)} checkpoint tensors are not used by LSeg and were skipped "
            f"(CLIP image tower: {model.unused_keys[0]}, ...)",
            stacklevel=2,
        )
    return model
