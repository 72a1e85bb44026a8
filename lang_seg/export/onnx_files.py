"""ONNX files of the torch reference's two encoders, through torch's ONNX exporter (torch.export based).

``image_encoder.onnx``: ``images (N, 3, H, W)`` float32 -> ``pixel_embeddings (N, C, H/2, W/2)``, with N, H
and W dynamic (H and W multiples of the patch size: the position embeddings are resized to the patch grid
inside the graph, a bilinear ``Resize`` whose output size follows the input's). ``text_encoder.onnx``:
``tokens (L, 77)`` int64 CLIP token ids -> ``text_embeddings (L, C)``, L dynamic.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Dict, List

import numpy as np
import torch

from lang_seg.labels import token_ids

from .layout import IMAGES, PIXEL_EMBEDDINGS, TEXT_EMBEDDINGS, TOKENS
from .runtime import onnx_session

# torch.export specialises a dimension traced at size 1 to the constant 1: trace the batch and label count at 2
TRACED_BATCH = 2


class ImageEncoder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        return self.net.pixel_embeddings(images)


class TextEncoder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, tokens):
        return self.net.text_embeddings(tokens)


@contextlib.contextmanager
def _quiet():
    """torch's exporter reports its progress on stdout and notes on its logger: the command says it in a line."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(module, example, path, inputs: List[str], outputs: List[str], dynamic: Dict, dims: Dict[str, list]) -> None:
    """``torch.onnx.export`` (torch.export based) to ``path``, then name the dynamic dimensions."""
    with _quiet():
        program = torch.onnx.export(module.eval(), (example,), dynamo=True, input_names=inputs,
                                    output_names=outputs, dynamic_shapes=dynamic, verbose=False)
        program.save(str(path))
    name_dimensions(path, dims)


def name_dimensions(path, dims: Dict[str, list]) -> None:
    """Readable names for the dynamic dimensions (torch.export calls them ``32*s17``, ``16*s52``)."""
    import onnx

    model = onnx.load(str(path))
    for value in list(model.graph.input) + list(model.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, dims.get(value.name, ())):
            if isinstance(name, str):
                dim.dim_param = name
    onnx.save(model, str(path))


def write_image_encoder(net, path, height: int, width: int) -> dict:
    """``image_encoder.onnx`` of a torch ``LSegNet``; returns its manifest entry (without the checks)."""
    from torch.export import Dim

    patch = net.patch_size
    rows, cols = Dim("rows", min=1), Dim("cols", min=1)
    dynamic = {"images": {0: Dim("N", min=1), 2: patch * rows, 3: patch * cols}}
    example = torch.zeros(TRACED_BATCH, 3, height, width)
    shapes = {IMAGES: ["N", 3, "H", "W"], PIXEL_EMBEDDINGS: ["N", net.out_c, "H/2", "W/2"]}
    with torch.no_grad():
        _export(ImageEncoder(net), example, path, [IMAGES], [PIXEL_EMBEDDINGS], dynamic, shapes)
    return {"inputs": {IMAGES: {"shape": shapes[IMAGES], "dtype": "float32"}},
            "outputs": {PIXEL_EMBEDDINGS: {"shape": shapes[PIXEL_EMBEDDINGS], "dtype": "float32"}},
            "dynamic": {"N": "any", "H": f"multiples of {patch}", "W": f"multiples of {patch}"}, "fixed": {}}


def write_text_encoder(net, path) -> dict:
    """``text_encoder.onnx`` of a torch ``LSegNet``; returns its manifest entry (without the checks)."""
    from torch.export import Dim

    context = net.clip_pretrained.context_length
    example = torch.from_numpy(token_ids(["a photo", "a label"][:TRACED_BATCH], context))
    shapes = {TOKENS: ["L", context], TEXT_EMBEDDINGS: ["L", net.out_c]}
    with torch.no_grad():
        _export(TextEncoder(net), example, path, [TOKENS], [TEXT_EMBEDDINGS], {"tokens": {0: Dim("L", min=1)}}, shapes)
    return {"inputs": {TOKENS: {"shape": shapes[TOKENS], "dtype": "int64"}},
            "outputs": {TEXT_EMBEDDINGS: {"shape": shapes[TEXT_EMBEDDINGS], "dtype": "float32"}},
            "dynamic": {"L": "any"}, "fixed": {}}


def run(path, name: str, array: np.ndarray) -> np.ndarray:
    """The exported file's output for one input, through onnxruntime (the verification's runtime)."""
    session = onnx_session(path)
    return session.run(None, {name: array})[0]
