"""Reading, checking and writing lang-seg checkpoints (torch parameter names).

A lang-seg Lightning checkpoint is a torch file with ``state_dict`` holding the
network under ``net.``; this project also writes ``hyper_parameters`` with the
network options. Upstream checkpoints carry no options: they are inferred from
the weights' shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .checkpoint_ms import read_mindspore_checkpoint
from .config import BACKBONES, NetOptions
from .errors import LangSegError
from .files import atomic_write
from .names import VIT_BLOCK_PREFIX
from .safe_load import file_kind, load_torch_file

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
    """A torch file (either format, even a truncated one); anything else is read as MindSpore's."""
    return file_kind(path) != "other"


def _check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise LangSegError(f"checkpoint {path} does not exist: check the path, or pass weights=None for random weights")
    if not path.is_file():
        raise LangSegError(f"checkpoint {path} is not a file")
    return path


def read_checkpoint(path, trust: bool = False) -> Checkpoint:
    """A torch (Lightning) checkpoint or a MindSpore checkpoint written by this project.

    Torch files are loaded weights-only (``lang_seg.safe_load``) unless ``trust``. Tensors keep
    their dtype (upstream stores CLIP's text tower in float16); the nets cast on loading.
    """
    path = _check_path(path)
    if not is_torch_file(path):
        state, hparams = read_mindspore_checkpoint(path)
        return Checkpoint(state, hparams, str(path))
    raw = load_torch_file(path, trust)
    if not isinstance(raw, dict):
        raise LangSegError(f"checkpoint {path} holds a {type(raw).__name__}, not a lang-seg state_dict")
    state = raw.get("state_dict", raw)
    if not any(k.startswith(NET_PREFIX) for k in state):
        raise LangSegError(f"checkpoint {path} has no 'net.*' weights: it is not a lang-seg LSeg checkpoint")
    net_state = {
        k[len(NET_PREFIX):]: _numpy(k, v, path) for k, v in state.items() if k.startswith(NET_PREFIX)
    }
    hparams = raw.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        hparams = dict(vars(hparams)) if hasattr(hparams, "__dict__") else {}
    extra = {k: v for k, v in raw.items() if k not in ("state_dict", "hyper_parameters")}
    return Checkpoint(net_state, hparams, str(path), extra)


def _numpy(key: str, value, path) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor):
        raise LangSegError(f"checkpoint {path}: {key} is a {type(value).__name__}, not a tensor")
    if value.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        value = value.float()
    return value.detach().numpy()


def infer_options(state: Dict[str, np.ndarray], hyper_parameters: Optional[dict] = None, **overrides) -> NetOptions:
    """Network options: explicit ``overrides`` win, then ``hyper_parameters``, then the weights' keys and shapes.

    What the weights cannot tell apart is never guessed: readouts ``ignore`` and ``add`` have the same
    tensors, and the head block's ``arch_option``, ``block_depth`` and ``activation`` leave the same ones.
    """
    values = dict(hyper_parameters or {})
    # upstream's flag names
    if "num_features" in values and "features" not in values:
        values["features"] = values["num_features"]
    values = {k: v for k, v in values.items() if k in NetOptions.__dataclass_fields__}
    shaped = _options_from_shapes(state)
    for key, value in shaped.items():
        if key != "shapes" and value is not None:
            values.setdefault(key, value)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("backbone") is None:
        raise LangSegError(
            f"checkpoint weights ({shaped['shapes']}) match no known backbone: pass backbone= one of {', '.join(BACKBONES)}"
        )
    if values.get("readout") is None:
        raise LangSegError(
            "checkpoint has no readout projection and no options saying which readout it was trained with "
            "('ignore' and 'add' have the same weights): pass readout='ignore' or 'add' (--readout) as used in training"
        )
    if "scratch.head_block.depthwise.depthwise.weight" in state:
        missing = [k for k in ("arch_option", "block_depth", "activation") if k not in values]
        if missing or values["arch_option"] == 0:
            raise LangSegError(
                "checkpoint has a spatial head block but no options saying how it was used: pass arch_option "
                f"(1 or 2), block_depth and activation as used in training (missing: {', '.join(missing or ['arch_option'])})"
            )
    return NetOptions.from_dict(values)


def _options_from_shapes(state: Dict[str, np.ndarray]) -> dict:
    if RESNET_STEM in state:
        return _resnet_options_from_shapes(state)
    try:
        patch = state["pretrained.model.patch_embed.proj.weight"].shape  # (C, 3, p, p)
        text_proj = state["clip_pretrained.text_projection"].shape  # (width, embed)
        features = state["scratch.layer1_rn.weight"].shape[0]
    except KeyError as exc:
        raise LangSegError(f"checkpoint lacks {exc.args[0]}: it is not an LSeg network checkpoint") from None
    blocks = [int(k.split(".")[3]) for k in state if k.startswith(VIT_BLOCK_PREFIX)]
    if not blocks:
        raise LangSegError(f"checkpoint lacks the ViT's blocks ({VIT_BLOCK_PREFIX}*): it is not an LSeg network "
                           "checkpoint, or it was cut short")
    depth = 1 + max(blocks)
    found = None
    for name, config in BACKBONES.items():
        if (
            config.vit is not None
            and config.vit.embed_dim == patch[0]
            and config.vit.patch_size == patch[2]
            and config.vit.depth == depth
            and (config.text.width, config.text.embed_dim) == tuple(text_proj)
        ):
            found = name
            break
    shapes = f"ViT width {patch[0]}, patch {patch[2]}, depth {depth}, text projection {tuple(text_proj)}"
    return dict(
        backbone=found,
        shapes=shapes,
        features=int(features),
        # a projection is visible; 'ignore' and 'add' are not (None: ask)
        readout="project" if "pretrained.act_postprocess1.0.project.0.weight" in state else None,
        use_bn="scratch.refinenet1.resConfUnit1.bn1.weight" in state,
    )


RESNET_STEM = "pretrained.layer1.0.weight"  # the stem convolution of upstream's LSegRNNetZS (zero-shot only)
RESNET_STAGES = ("pretrained.layer1.4.", "pretrained.layer2.", "pretrained.layer3.", "pretrained.layer4.")


def _resnet_options_from_shapes(state: Dict[str, np.ndarray]) -> dict:
    """LSegRNNetZS: the ResNet's stem width, blocks and inner widths per stage pick the backbone."""
    try:
        stem = state[RESNET_STEM].shape[0]
        text_proj = state["clip_pretrained.text_projection"].shape
        features = state["scratch.layer1_rn.weight"].shape[0]
        blocks, widths = [], []
        for prefix in RESNET_STAGES:
            indices = {int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)}
            blocks.append(1 + max(indices) if indices else 0)
            widths.append(state[prefix + "0.conv1.weight"].shape[0])
    except KeyError as exc:
        raise LangSegError(f"checkpoint lacks {exc.args[0]}: it is not an LSeg network checkpoint, or it was cut "
                           "short") from None
    layout = (stem, tuple(blocks), tuple(widths), tuple(text_proj))
    found = next((name for name, config in BACKBONES.items() if config.resnet is not None and layout == (
        config.resnet.stem_width, config.resnet.blocks, config.resnet.widths, (config.text.width, config.text.embed_dim))),
        None)
    return dict(
        backbone=found,
        shapes=f"ResNet stem {stem}, blocks {tuple(blocks)}, widths {tuple(widths)}, text projection {tuple(text_proj)}",
        features=int(features),
        readout="project",  # no ViT: the option has no effect
        use_bn="scratch.refinenet1.resConfUnit1.bn1.weight" in state,
        zero_shot=True,
    )


FEWSHOT_DATASETS = ("pascal", "coco", "fss")  # upstream's LSegModuleZS datasets (its --dataset choices)


def checkpoint_kind(ckpt: Checkpoint) -> Optional[bool]:
    """Whether ``ckpt`` holds one of upstream's zero-shot networks (True), LSegNet (False), or cannot say (None).

    The ResNet trunk exists only zero-shot; this project's files say it in their options (``zero_shot``,
    None where it was not known); a head block, a decoder without BatchNorm or a ViT readout other than
    the projection is LSegNet (the zero-shot nets have none of these); a training run's ``dataset``
    names a few-shot benchmark or not; other options written by this project predate the zero-shot
    nets. An upstream ViT checkpoint without options is either (the same tensors): None.
    """
    state, hparams = ckpt.state, ckpt.hyper_parameters or {}
    if RESNET_STEM in state:
        return True
    if isinstance(hparams.get("zero_shot"), bool):
        return hparams["zero_shot"]
    if any(k.startswith("scratch.head_block.") for k in state) or "scratch.refinenet1.resConfUnit1.bn1.weight" not in state:
        return False
    if "pretrained.act_postprocess1.0.project.0.weight" not in state:  # upstream's LSegNetZS reads out by projection
        return False
    if isinstance(hparams.get("dataset"), str):
        return hparams["dataset"] in FEWSHOT_DATASETS
    if "zero_shot" in hparams:  # written as not known (a conversion of an upstream file without options)
        return None
    if any(k in NetOptions.__dataclass_fields__ or k == "num_features" for k in hparams):
        return False  # options written before the zero-shot networks existed here: LSegNet's
    return None


def save_checkpoint(path, state: Dict[str, np.ndarray], options: NetOptions, extra: Optional[dict] = None) -> None:
    """A Lightning-style torch checkpoint that both backends (and upstream's key layout) read."""
    import torch

    payload = dict(extra or {})
    payload["state_dict"] = {NET_PREFIX + k: torch.from_numpy(np.asarray(v, order="C")) for k, v in state.items()}
    hparams = dict(payload.get("hyper_parameters") or {})
    hparams.update(options.to_dict())
    payload["hyper_parameters"] = hparams
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
