"""Pretrained CLIP and timm weights through the libraries' own loaders (needs a network or a filled cache).

With ``LANGSEG_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) nothing is downloaded: a
weight file missing from its cache is reported at once.
"""
from __future__ import annotations

import os
import warnings

from .errors import LangSegError


def offline() -> bool:
    return os.environ.get("LANGSEG_OFFLINE", "0") == "1" or os.environ.get("HF_HUB_OFFLINE", "0") == "1"


def clip_cache_dir() -> str:
    return os.environ.get("LANGSEG_CLIP_CACHE", os.path.expanduser("~/.cache/clip"))


def load_timm_pretrained(timm_name: str):
    import timm

    try:
        if offline():
            os.environ["HF_HUB_OFFLINE"] = "1"
        return timm.create_model(timm_name, pretrained=True)
    except Exception as exc:  # huggingface_hub raises several offline error types
        cache = os.environ.get("HF_HUB_CACHE", os.path.expanduser("~/.cache/huggingface/hub"))
        raise LangSegError(
            f"could not load timm weights for {timm_name} ({type(exc).__name__}): with a network timm "
            f"downloads them; offline, place the Hugging Face repo timm/{timm_name} under {cache}, "
            f"or build from a lang-seg checkpoint (weights=...) or with pretrained=False"
        ) from None


def load_clip_text_pretrained(text_encoder, clip_name: str, device: str = "cpu") -> None:
    """Copy the text tower of OpenAI CLIP ``clip_name`` into ``text_encoder`` (fp32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import clip
        from clip.clip import _MODELS

    root = clip_cache_dir()
    filename = os.path.basename(_MODELS[clip_name])
    path = os.path.join(root, filename)
    try:
        if offline() and not os.path.isfile(path):
            raise FileNotFoundError(path)
        model, _ = clip.load(clip_name, device=device, jit=False, download_root=root)
    except Exception as exc:
        raise LangSegError(
            f"could not load CLIP {clip_name} ({type(exc).__name__}): with a network clip downloads it; "
            f"offline, place {filename} at {path}, or build from a lang-seg "
            f"checkpoint (weights=...) or with pretrained=False"
        ) from None
    state = {k: v.float() for k, v in model.state_dict().items() if not k.startswith("visual.") and k != "logit_scale"}
    text_encoder.load_state_dict(state, strict=True)


def load_torchvision_pretrained(name: str):
    """torchvision's ImageNet model ``name`` (``resnet101``: the weights upstream's ``pretrained=True`` loads)."""
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    try:
        if offline() and not os.path.isfile(path):
            raise FileNotFoundError(path)
        return torchvision.models.get_model(name, weights=weights)
    except Exception as exc:
        raise LangSegError(
            f"could not load torchvision's {name} weights ({type(exc).__name__}): with a network torchvision "
            f"downloads them; offline, place {filename} at {path}, or build from a lang-seg checkpoint "
            f"(weights=...) or with pretrained=False"
        ) from None
