"""``python -m lang_seg.export``: LSeg's two encoders as ONNX (torch) and MindIR (MindSpore) files, each
loaded back by its runtime, checked against its backend's ``pixel_embeddings``/``text_embeddings`` on a
photo, and described in ``manifest.json``.

    python -m lang_seg.export --weights CKPT --out DIR [--size H W] [--format onnx|mindir|both]

The folder is written under a temporary name and renamed when every file has passed its check (max
absolute deviation at most ``layout.TOLERANCE`` in fp32); an error leaves nothing behind.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import sys
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

from lang_seg import __version__
from lang_seg.checkpoint import infer_options, read_checkpoint
from lang_seg.config import LOGIT_SCALE, check_image_size
from lang_seg.errors import LangSegError, cli_errors
from lang_seg.evaluate import CROP_SIZE, PAD_VALUE
from lang_seg.files import atomic_folder, write_json
from lang_seg.images import NORM_MEAN, NORM_STD, normalize
from lang_seg.labels import CLIP_VOCABULARY, clip_vocabulary, special_tokens, token_ids

from .layout import (EXTRA, FORMATS, IMAGE_ENCODER, IMAGES, MANIFEST, MANIFEST_VERSION, SOURCES, TEXT_ENCODER,
                     TOKENS, TOLERANCE, file_name, read_manifest)

# what every exported file is checked on: the demo's labels and a longer one
CHECK_LABELS = ("person", "dog", "sofa", "wall", "other", "a potted plant on the window sill")
RUNTIMES = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "mindir": ("mindspore",)}


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_runtimes(formats: Sequence[str]) -> None:
    """One line naming the extra when a format's exporter or runtime is not installed."""
    for fmt in formats:
        for module in RUNTIMES[fmt]:
            try:
                importlib.import_module(module)
            except ImportError:
                raise LangSegError(f"--format {fmt} needs {module}, which is not installed: {EXTRA}") from None


def check_out(out: Path) -> None:
    """An export may replace an earlier export, never anything else."""
    if out.is_file():
        raise LangSegError(f"--out {out} is a file: give a folder path")
    if out.is_dir() and any(out.iterdir()):
        try:
            read_manifest(out)
        except LangSegError:
            raise LangSegError(f"--out {out} exists and is not an LSeg export folder: choose a new or empty folder "
                               "(an earlier export is replaced)") from None


def photo(height: int, width: int) -> np.ndarray:
    """``(2, 3, height, width)``: the bundled photo resized, and its mirror image, normalised."""
    from PIL import Image

    from lang_seg.commands.demo import bundled_image

    rgb = np.asarray(Image.fromarray(bundled_image()).resize((width, height), Image.BILINEAR))
    image = normalize(rgb)
    return np.stack([image, image[:, :, ::-1]])


def build(backend: str, options, state, what: str):
    if backend == "torch":
        from lang_seg.backends.torch_backend import TorchModel

        return TorchModel(options, state=state, what=what)
    from lang_seg.backends.mindspore_backend import MindSporeModel

    return MindSporeModel(options, state=state, what=what)


def deviation(name: str, exported: np.ndarray, reference: np.ndarray, source: str) -> float:
    if exported.shape != reference.shape:
        raise LangSegError(f"{name} gives shape {exported.shape}, {source} gives {reference.shape}: not written")
    worst = float(np.abs(exported.astype(np.float64) - reference).max())
    if not worst <= TOLERANCE:
        raise LangSegError(f"{name} deviates from {source} by {worst:.2e} (max abs, over {TOLERANCE:g} in fp32): "
                           "nothing was written; please report it with the checkpoint's backbone and options")
    return worst


def export_format(fmt: str, model, folder: Path, size: Tuple[int, int]) -> Dict[str, dict]:
    """Write ``fmt``'s two files into ``folder``, run each in its runtime and compare it with ``model``."""
    writer = importlib.import_module(f"lang_seg.export.{fmt}_files")
    height, width = size
    source = f"the {SOURCES[fmt]} backend"
    runtime = "onnxruntime" if fmt == "onnx" else "mindspore.load + nn.GraphCell"

    def check(name: str, entry: dict, inputs, reference, input_name: str) -> dict:
        worst = max(deviation(name, writer.run(folder / name, input_name, x), reference(x), source) for x in inputs)
        entry.update(runtime=runtime, source=SOURCES[fmt], max_abs_deviation=worst,
                     checked_on=[list(x.shape) for x in inputs])
        return entry

    images = [photo(height, width)]
    if fmt == "onnx":  # another batch size and image size, through the dynamic dimensions
        images.append(photo(height + model.patch_size, width + 2 * model.patch_size)[:1])
    else:
        images = [images[0][: writer.FIXED_BATCH]]
    image_file, text_file = file_name(IMAGE_ENCODER, fmt), file_name(TEXT_ENCODER, fmt)
    entries = {image_file: writer.write_image_encoder(model.net, folder / image_file, height, width),
               text_file: writer.write_text_encoder(model.net, folder / text_file)}
    check(image_file, entries[image_file], images, model.pixel_embeddings, IMAGES)
    tokens = token_ids(CHECK_LABELS, model.net.clip_pretrained.context_length)
    check(text_file, entries[text_file], [tokens], lambda _: model.text_embeddings(list(CHECK_LABELS)), TOKENS)
    return entries


def manifest_of(weights: str, options, size, files: Dict[str, dict], folder: Path) -> dict:
    config = options.config
    start, end = special_tokens()
    return {
        "format": "lang-seg export", "version": MANIFEST_VERSION, "lang_seg": __version__,
        "checkpoint": {"file": Path(weights).name, "sha256": sha256(weights)},
        "backbone": options.backbone, "options": options.to_dict(),
        "patch_size": config.vit.patch_size, "embedding_dim": config.text.embed_dim, "size": list(size),
        "normalization": {"input": "RGB, values / 255", "mean": [NORM_MEAN] * 3, "std": [NORM_STD] * 3,
                          "pad_value": PAD_VALUE},
        "logits": {"scale": LOGIT_SCALE, "rule": "scale * pixel_embeddings . text_embeddings at (H/2, W/2), then "
                   "x2 bilinear upsampling with aligned corners to (H, W)"},
        "tokenizer": {"kind": "CLIP byte-pair encoding (OpenAI CLIP's simple_tokenizer: ftfy, lower case)",
                      "vocabulary": CLIP_VOCABULARY, "context_length": config.text.context_length,
                      "start_token": start, "end_token": end, "padding": 0, "dtype": "int64",
                      "too_long": "cut to the context, the last kept token replaced by the end token"},
        "tolerance": TOLERANCE, "files": files,
        "contents": {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
                     for p in sorted(folder.rglob("*")) if p.is_file()},
    }


def export(weights, out, size: Tuple[int, int] = (CROP_SIZE, CROP_SIZE), formats: Sequence[str] = FORMATS,
           trust: bool = False, **overrides) -> dict:
    """Write the export folder ``out``; returns its manifest."""
    require_runtimes(formats)
    out = Path(out)
    check_out(out)
    with atomic_folder(out) as folder:  # first, so that an unwritable --out is said before any work
        ckpt = read_checkpoint(weights, trust)
        options = infer_options(ckpt.state, ckpt.hyper_parameters, **overrides)
        try:
            check_image_size(size[0], size[1], options.config.vit.patch_size)
        except LangSegError as exc:
            raise LangSegError(f"--size: {exc}") from None
        files = {}
        for fmt in formats:
            model = build(SOURCES[fmt], options, ckpt.state, f"checkpoint {weights}")
            files.update(export_format(fmt, model, folder, size))
            del model
        shutil.copyfile(clip_vocabulary(), folder / CLIP_VOCABULARY)
        manifest = manifest_of(weights, options, size, files, folder)
        write_json(folder / MANIFEST, manifest)
    return manifest


def describe(name: str, entry: dict) -> str:
    (inp, spec), = entry["inputs"].items()
    (outp, out_spec), = entry["outputs"].items()
    shape = lambda s: "(" + ", ".join(str(d) for d in s) + ")"
    dims = entry["fixed"] and (f"fixed input {shape(spec['shape'])}: {entry['fixed']['why']}")
    dims = dims or ", ".join(entry["dynamic"]) + " dynamic"
    return (f"{name}: {inp} {shape(spec['shape'])} -> {outp} {shape(out_spec['shape'])}; {dims}; "
            f"max deviation from {entry['source']} {entry['max_abs_deviation']:.1e}")


@cli_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lang_seg.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="an LSeg checkpoint (torch Lightning or MindSpore)")
    parser.add_argument("--out", required=True, help="the folder to write (an earlier export there is replaced)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(CROP_SIZE, CROP_SIZE),
                        help="the size the files are traced and checked at (MindIR's image encoder is fixed to it)")
    parser.add_argument("--format", choices=FORMATS + ("both",), default="both")
    parser.add_argument("--backbone", default=None, help="override the backbone inferred from the weights")
    parser.add_argument("--readout", default=None)
    parser.add_argument("--arch_option", type=int, default=None)
    parser.add_argument("--block_depth", type=int, default=None)
    parser.add_argument("--activation", default=None)
    parser.add_argument("--trust-checkpoint", dest="trust", action="store_true",
                        help="load a torch file holding objects other than tensors (runs code from it: trusted files only)")
    args = parser.parse_args(argv)
    overrides = {k: v for k in ("backbone", "readout", "arch_option", "block_depth", "activation")
                 if (v := getattr(args, k)) is not None}
    formats = FORMATS if args.format == "both" else (args.format,)
    manifest = export(args.weights, args.out, tuple(args.size), formats, args.trust, **overrides)
    for name, entry in manifest["files"].items():
        print(describe(name, entry))
    print(f"wrote {args.out} ({MANIFEST}: backbone {manifest['backbone']}, checkpoint sha256 "
          f"{manifest['checkpoint']['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
