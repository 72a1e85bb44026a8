"""Pretrained CLIP and timm weights through the libraries' own loaders (needs a network or a filled cache).

With ``LANGSEG_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) nothing is downloaded and no connection is tried:
timm's weights are looked up in the Hugging Face cache on disk and handed to timm as a file, and a
weight file missing from its cache is reported at once, naming the file to place. (Setting
``HF_HUB_OFFLINE`` here would not do: ``huggingface_hub`` reads it once, when first imported.)
"""
from __future__ import annotations

import os

from .errors import LangSegError
from .labels import import_clip

OFFLINE_HINT = "or build from a lang-seg checkpoint (weights=...) or with pretrained=False"
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a hub repo, in its order


def offline() -> bool:
    return os.environ.get("LANGSEG_OFFLINE", "0") == "1" or os.environ.get("HF_HUB_OFFLINE", "0") == "1"


def clip_cache_dir() -> str:
    return os.environ.get("LANGSEG_CLIP_CACHE", os.path.expanduser("~/.cache/clip"))


def timm_hub_repo(timm_name: str) -> str:
    """The Hugging Face repo timm takes ``timm_name``'s default weights from (``timm/<name>.<tag>``)."""
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(timm_name).hf_hub_id


def hf_cache_dir() -> str:
    """The Hugging Face hub cache, as the environment says now (``huggingface_hub`` read it when imported)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return os.environ.get("HF_HUB_CACHE", HF_HUB_CACHE)


def cached_timm_file(repo: str):
    """The weight file of ``repo`` in the Hugging Face cache on disk, or None; reads no network."""
    from huggingface_hub import try_to_load_from_cache

    for filename in TIMM_FILES:
        found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir())
        if isinstance(found, str):
            return found
    return None


def load_timm_pretrained(timm_name: str):
    import timm

    if offline():
        repo = timm_hub_repo(timm_name)
        found = cached_timm_file(repo)
        if found is None:
            folder = os.path.join(hf_cache_dir(), "models--" + repo.replace("/", "--"))
            raise LangSegError(
                f"offline: timm weights for {timm_name} are not in the Hugging Face cache: place {TIMM_FILES[0]} "
                f"of the Hugging Face repo {repo} under {folder} (copy that folder from a machine where "
                f"'huggingface-cli download {repo} {TIMM_FILES[0]}' ran), {OFFLINE_HINT}"
            )
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay=dict(file=found))
    try:
        return timm.create_model(timm_name, pretrained=True)
    except Exception as exc:  # huggingface_hub raises several network error types
        raise LangSegError(
            f"could not load timm weights for {timm_name} ({type(exc).__name__}): with a network timm "
            f"downloads them from the Hugging Face repo {timm_hub_repo(timm_name)}; offline, set "
            f"LANGSEG_OFFLINE=1 and place them in its cache, {OFFLINE_HINT}"
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
            f"offline, place {filename} at {path}, {OFFLINE_HINT}"
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
