"""Pretrained CLIP and timm weights through the libraries' own loaders (needs a network or a filled cache).

With ``LANGSEG_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) nothing is downloaded: a
weight file missing from its cache is reported at once.
"""
from __future__ import annotations

import os

from .errors import LangSegError
from .labels import import_clip


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
    clip = import_clip()
    _MODELS = import_clip("clip.clip")._MODELS

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
