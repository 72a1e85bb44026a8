"""LSeg for deployment: its encoders as ONNX (from the torch reference) and MindIR (from MindSpore) files,
and a segmenter that runs the ONNX files with onnxruntime and numpy alone.

    python -m lang_seg.export --weights CKPT --out DIR [--size H W] [--format onnx|mindir|both]

    from lang_seg.export import OnnxSegmenter
    label_map = OnnxSegmenter("DIR").segment("photo.jpg", ["sky", "tree", "other"])

Importing this package brings in neither torch nor MindSpore; the writers and the
command (``lang_seg.export.command``) do.
"""
from .layout import MANIFEST, TOLERANCE, read_manifest
from .runtime import OnnxSegmenter

__all__ = ["OnnxSegmenter", "read_manifest", "MANIFEST", "TOLERANCE"]
