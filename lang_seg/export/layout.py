"""What an export folder holds: file names, tensor names, the manifest, the deviation bound.

One place knows them: the writers (``lang_seg.export.command``), the runtime
segmenter (``lang_seg.export.runtime``) and the tests read them from here.
"""
from __future__ import annotations

import json
from pathlib import Path

from lang_seg.errors import LangSegError

FORMATS = ("onnx", "mindir")
SOURCES = {"onnx": "torch", "mindir": "mindspore"}  # the backend each format is exported from
IMAGE_ENCODER, TEXT_ENCODER = "image_encoder", "text_encoder"
IMAGES, PIXEL_EMBEDDINGS = "images", "pixel_embeddings"  # image encoder: input, output
TOKENS, TEXT_EMBEDDINGS = "tokens", "text_embeddings"  # text encoder: input, output
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
TOLERANCE = 1e-4  # max |exported - backend| in fp32 above which an export is refused
EXTRA = 'pip install -e ".[export]" (from a checkout) or pip install "lang-seg-ms[export]"'


def file_name(part: str, fmt: str) -> str:
    """``image_encoder.onnx``, ``text_encoder.mindir``, ..."""
    return f"{part}.{fmt}"


def read_manifest(folder) -> dict:
    """The manifest of an export folder, or one line saying why ``folder`` is not one."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise LangSegError(f"{folder} is not an LSeg export folder (no {MANIFEST}): "
                           "write one with python -m lang_seg.export --weights CKPT --out DIR")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise LangSegError(f"{path} is not valid JSON ({exc}): export the folder again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "lang-seg export":
        raise LangSegError(f"{path} is not an LSeg export manifest: export the folder again")
    if manifest.get("version") != MANIFEST_VERSION:
        raise LangSegError(f"{path} has manifest version {manifest.get('version')}, this lang_seg reads "
                           f"version {MANIFEST_VERSION}: export the folder again with this version")
    return manifest
