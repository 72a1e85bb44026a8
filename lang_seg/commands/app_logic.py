"""What the browser demo computes, as plain functions: checked labels and pictures in, label maps out.

The page (``lang_seg/webapp/page.py``) only lays these out. Every function
returns a value or raises ``LangSegError`` with a one-line message, which the
page shows as ``error: ...`` before serving the next request.
"""
from __future__ import annotations

import functools
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.errors import LangSegError
from lang_seg.images import pil_to_rgb
from lang_seg.evaluate import DEFAULT_SCALES
from lang_seg.labels import ade20k_labels, check_context, check_labels

MAX_LABELS = 500
MAX_SIDE = 4096
MIN_SIDE = 16  # smaller pictures hold no segmentation worth showing (and 1x1 ones break resizing)
SINGLE_SCALE = ((1.0,), False)
SIX_SCALES = (DEFAULT_SCALES, True)  # upstream's evaluation, with flip
BACKEND_CHOICES = ("torch", "mindspore", "both")
BUNDLED_IMAGES = BUNDLED / "ADEChallengeData2016" / "images"
SEED_LABEL_SETS = ("plant,grass,cat,stone,other", "sea,beach,other", "building,plant,sky,other")


def ade20k_classes() -> Tuple[str, ...]:
    return tuple(ade20k_labels())


def presets() -> Dict[str, str]:
    """Label presets (name: text as typed): the seed's sets, then ADE20K's 150 classes."""
    named = {text.replace(",", ", "): text.replace(",", ", ") for text in SEED_LABEL_SETS}
    named["ADE20K: 150 classes"] = ", ".join(ade20k_classes())
    return named


def parse_label_text(text: Optional[str], max_labels: int = MAX_LABELS) -> List[str]:
    """Comma-separated labels as typed: at least one, at most ``max_labels``, each once (ADE20K's
    class list, which names 'screen' twice, is accepted as it is), each within CLIP's context."""
    parts = [part.strip() for part in (text or "").split(",")]
    if not any(parts):
        raise LangSegError("no labels: type at least one, comma-separated, e.g. 'dog, grass, other'")
    if len(parts) > max_labels:
        raise LangSegError(f"{len(parts)} labels given: at most {max_labels} are allowed")
    labels = check_labels(parts, source="the typed labels", unique=tuple(parts) != ade20k_classes())
    check_context(labels)
    return labels


def read_picture(data: bytes, max_side: int = MAX_SIDE, name: str = "the file") -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of an uploaded file's bytes (any format Pillow reads; greyscale, RGBA,
    16-bit converted by ``lang_seg.images``). The size comes from the header, so a picture over
    ``max_side`` is refused before any pixel is decoded."""
    from PIL import Image

    if not data:
        raise LangSegError(f"{name} is empty")
    limit = f"over the limit of {max_side} px on the long side: shrink it first"
    try:
        im = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise LangSegError(f"{name} is far {limit}") from None
    except Exception:  # Pillow's format plugins raise many types for files that are not pictures
        raise LangSegError(f"{name} is not a picture that can be read (JPEG, PNG, BMP, TIFF, WebP, ...)") from None
    with im:
        width, height = im.size
        if max(width, height) > max_side:
            raise LangSegError(f"{name} is {width}x{height} pixels, {limit}")
        if min(width, height) < MIN_SIDE:
            raise LangSegError(f"{name} is {width}x{height} pixels: too small, give at least {MIN_SIDE} px a side")
        try:
            im.load()
            return pil_to_rgb(im)
        except LangSegError:
            raise
        except Exception as exc:  # truncated or corrupt data
            raise LangSegError(f"{name} is damaged or truncated ({exc})") from None


def example_pictures() -> Dict[str, Path]:
    """The bundled pictures by name: a PASCAL VOC and an ARC2017 photo, then the generated scenes."""
    kinds = (("PASCAL VOC photo", "training/*_voc_*.jpg"), ("ARC2017 photo", "training/*_arc_*.jpg"),
             ("generated scene", "validation/*.jpg"))
    return {f"{kind} {path.stem.rsplit('_', 1)[-1]}": path
            for kind, pattern in kinds for path in sorted(BUNDLED_IMAGES.glob(pattern))}


class ModelStore:
    """One model per backend for the life of the process, loaded on first use. Each has a lock: a
    SegModel is not meant to be shared between threads (its cached text features, MindSpore's
    graphs), and on a CPU two runs at once are no faster than one after the other."""

    def __init__(self, weights: str):
        self.weights = weights
        self._models: Dict[str, Tuple[object, threading.Lock]] = {}
        self._loading = threading.Lock()

    def get(self, backend: str):
        """``(model, lock)`` of ``backend``."""
        with self._loading:
            if backend not in self._models:
                from lang_seg import load_model

                self._models[backend] = (load_model(self.weights, backend=backend), threading.Lock())
            return self._models[backend]

    def loaded(self) -> List[str]:
        return sorted(self._models)


@functools.lru_cache(maxsize=None)
def model_store(weights: str) -> ModelStore:
    """The process's store for ``weights``: shared by the launcher (which loads the default backend
    before serving) and every page session."""
    return ModelStore(weights)


@dataclass
class BackendRun:
    backend: str
    label_map: np.ndarray  # (H, W) int64 label ids
    seconds: float


@dataclass
class Segmentation:
    """One request's result: the picture, its labels, each backend's label map and time."""

    rgb: np.ndarray
    labels: List[str]
    runs: List[BackendRun]
    multi_scale: bool

    @property
    def agreement(self) -> Optional[float]:
        """Share of pixels on which the first two backends give the same label."""
        if len(self.runs) < 2:
            return None
        return float(np.mean(self.runs[0].label_map == self.runs[1].label_map))


def backends_of(choice: str) -> List[str]:
    if choice not in BACKEND_CHOICES:
        raise LangSegError(f"unknown backend {choice!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    return ["torch", "mindspore"] if choice == "both" else [choice]


def segment_picture(store: ModelStore, rgb: np.ndarray, labels: Sequence[str], backend: str = "torch",
                    multi_scale: bool = False, progress: Optional[Callable[[float, str], None]] = None,
                    **evaluator) -> Segmentation:
    """Segment ``rgb`` with ``labels`` on ``backend`` ('torch', 'mindspore' or 'both'), at one scale or
    upstream's six with flip; ``progress(fraction, text)`` hears of each step before it runs.
    ``evaluator``: further ``SegModel.segment`` arguments (``base_size``, ``crop_size``)."""
    scales, flip = SIX_SCALES if multi_scale else SINGLE_SCALE
    backends = backends_of(backend)
    labels = list(labels)
    report = progress or (lambda fraction, text: None)
    how = "6 scales with flip" if multi_scale else "one scale"
    runs = []
    for i, name in enumerate(backends):
        step = i / len(backends)
        report(step, f"{name}: loading the model")
        model, lock = store.get(name)
        if not lock.acquire(blocking=False):
            report(step, f"{name}: waiting for another session's run to finish")
            lock.acquire()
        try:
            report(step + 0.1 / len(backends), f"{name}: encoding {len(labels)} labels")
            model.text_features(labels)  # cached per label set: segment() reuses it
            report(step + 0.2 / len(backends), f"{name}: segmenting at {how}")
            start = time.perf_counter()
            label_map = model.segment(rgb, labels, scales=scales, flip=flip, **evaluator)
            runs.append(BackendRun(name, np.asarray(label_map, dtype=np.int64), time.perf_counter() - start))
        finally:
            lock.release()
    report(1.0, "done")
    return Segmentation(rgb, labels, runs, multi_scale)
