"""Reading, checking and writing lang-seg checkpoints (torch parameter names).

A lang-seg Lightning checkpoint is a torch file with ``state_dict`` holding the
network under ``net.``; this project also writes ``hyper_parameters`` with the
network options. Upstream checkpoints carry no options: they are inferred from
the weights' shapes.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .checkpoint_ms import read_mindspore_checkpoint
from .config import BACKBONES, NetOptions
from .errors import LangSegError
from .files import atomic_write

NET_PREFIX = "net."


@dataclass
class Checkpoint:
    """Network weights as numpy arrays under torch names (without ``net.``)."""

    state: Dict[str, np.ndarray]
    hyper_parameters: dict = field(default_factory=dict)
    path: Optional[str] = None
    # Everything else a Lightning checkpoint carries (optimizer states, loops, ...).
    extra: dict = field(default_factory=dict)


def is_torch_file(path) -> bool:
    return zipfile.is_zipfile(path)


def _check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise LangSegError(f"checkpoint {path} does not exist: check the path, or pass weights=None for random weights")
    if not path.is_file():
        raise LangSegError(f"checkpoint {path} is not a file")
    return path


def read_checkpoint(path) -> Checkpoint:
    """A torch (Lightning) checkpoint or a MindSpore checkpoint written by this project."""
    path = _check_path(path)
    if not is_torch_file(path):
        state, hparams = read_mindspore_checkpoint(path)
        return Checkpoint(state, hparams, str(path))
    import torch

    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise LangSegError(f"checkpoint {path} cannot be read by torch ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise LangSegError(f"checkpoint {path} holds a {type(raw).__name__}, not a lang-seg state_dict")
    state = raw.get("state_dict", raw)
    if not any(k.startswith(NET_PREFIX) for k in state):
        raise LangSegError(f"checkpoint {path} has no 'net.*' weights: it is not a lang-seg LSeg checkpoint")
    net_state = {
        k[len(NET_PREFIX):]: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
        for k, v in state.items()
        if k.startswith(NET_PREFIX)
    }
    hparams = raw.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        hparams = dict(vars(hparams)) if hasattr(hparams, "__dict__") else {}
    extra = {k: v for k, v in raw.items() if k not in ("state_dict", "hyper_parameters")}
    return Checkpoint(net_state, hparams, str(path), extra)


def infer_options(state: Dict[str, np.ndarray], hyper_parameters: Optional[dict] = None, **overrides) -> NetOptions:
    """Network options: explicit ``overrides`` win, then ``hyper_parameters``, then the weights' shapes."""
    values = dict(hyper_parameters or {})
    # upstream's flag names
    if "num_features" in values and "features" not in values:
        values["features"] = values["num_features"]
    values = {k: v for k, v in values.items() if k in NetOptions.__dataclass_fields__}
    shaped = _options_from_shapes(state)
    for key, value in shaped.items():
        if key != "shapes":
            values.setdefault(key, value)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("backbone") is None:
        raise LangSegError(
            f"checkpoint weights ({shaped['shapes']}) match no known backbone: pass backbone= one of {', '.join(BACKBONES)}"
        )
    if values.get("arch_option", 0) == 0 and "scratch.head_block.depthwise.depthwise.weight" in state:
        raise LangSegError(
            "checkpoint has a spatial head block but no options saying which: pass arch_option (1 or 2) "
            "and block_depth as used in training"
        )
    return NetOptions.from_dict(values)


def _options_from_shapes(state: Dict[str, np.ndarray]) -> dict:
    try:
        patch = state["pretrained.model.patch_embed.proj.weight"].shape  # (C, 3, p, p)
        text_proj = state["clip_pretrained.text_projection"].shape  # (width, embed)
        features = state["scratch.layer1_rn.weight"].shape[0]
    except KeyError as exc:
        raise LangSegError(f"checkpoint lacks {exc.args[0]}: it is not an LSeg network checkpoint") from None
    depth = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("pretrained.model.blocks."))
    found = None
    for name, config in BACKBONES.items():
        if (
            config.vit.embed_dim == patch[0]
            and config.vit.patch_size == patch[2]
            and config.vit.depth == depth
            and (config.text.width, config.text.embed_dim) == tuple(text_proj)
        ):
            found = name
            break
    readout = "project" if "pretrained.act_postprocess1.0.project.0.weight" in state else "ignore"
    shapes = f"ViT width {patch[0]}, patch {patch[2]}, depth {depth}, text projection {tuple(text_proj)}"
    return dict(
        backbone=found,
        shapes=shapes,
        features=int(features),
        readout=readout,
        use_bn="scratch.refinenet1.resConfUnit1.bn1.weight" in state,
    )


def save_checkpoint(path, state: Dict[str, np.ndarray], options: NetOptions, extra: Optional[dict] = None) -> None:
    """A Lightning-style torch checkpoint that both backends (and upstream's key layout) read."""
    import torch

    payload = dict(extra or {})
    payload["state_dict"] = {NET_PREFIX + k: torch.from_numpy(np.asarray(v, order="C")) for k, v in state.items()}
    hparams = dict(payload.get("hyper_parameters") or {})
    hparams.update(options.to_dict())
    payload["hyper_parameters"] = hparams
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
