"""The few-shot readers: upstream's split lists shipped as package data, upstream's episodes (the same draws
after fix_randseed(0)), upstream's transform and masks, the bundled FSS-1000-layout set, and bad input."""
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lang_seg import LangSegError
from lang_seg.config import CLIP_LSEG_NORM, IMAGENET_NORM
from lang_seg.data.fewshot import build_dataset
from lang_seg.data.fewshot.bundled import ROOT as BUNDLED
from lang_seg.data.fewshot.bundled import build as build_bundled
from lang_seg.data.fewshot.common import resize_nearest
from lang_seg.data.fewshot.splits import SPLITS_DIR, UPSTREAM, coco_split, fss_split, pascal_split, write_splits

from .helpers import FIXTURES

EPISODES = json.loads((FIXTURES / "upstream_zs_episodes.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_split_lists_are_upstreams():
    listed = dict(reversed(line.split("  ")) for line in (SPLITS_DIR / "SHA256SUMS").read_text().splitlines())
    assert len(listed) == len(UPSTREAM) == 19
    for name, digest in listed.items():
        assert sha256(SPLITS_DIR / name) == digest, name
        if not name.endswith(".gz"):  # PASCAL's and FSS-1000's lists are upstream's files, byte for byte
            assert UPSTREAM[name] == digest, name
    assert len(pascal_split("val", 0)) == 346 and pascal_split("val", 0)[0] == ("2007_000033", 0)
    assert len(fss_split("test")) == 240 and fss_split("test")[0] == "abe's_flyingfish"  # CRLF file, as upstream reads it
    val = coco_split("val", 0)
    assert sorted(val) == list(range(80)) and len(val[0]) == 19217
    assert val[0][0] == "val2014/COCO_val2014_000000429717.jpg"


@pytest.mark.skipif(not os.environ.get("LANGSEG_UPSTREAM"), reason="LANGSEG_UPSTREAM names no lang-seg checkout")
def test_split_lists_regenerate_from_upstream(tmp_path):
    import pickle

    written = write_splits(Path(os.environ["LANGSEG_UPSTREAM"]), tmp_path)
    assert {name: sha256(tmp_path / name) for name in written} == written
    assert (tmp_path / "SHA256SUMS").read_bytes() == (SPLITS_DIR / "SHA256SUMS").read_bytes()
    source = Path(os.environ["LANGSEG_UPSTREAM"]) / "fewshot_data/data/splits/coco/val/fold2.pkl"
    assert coco_split("val", 2) == pickle.loads(source.read_bytes())  # upstream's own file, trusted here


def touch_dataset(root: Path, benchmark: str, names) -> None:
    """Empty files where the episodes' pictures and masks go: enough for the readers' check of the files."""
    for name in names:
        if benchmark == "pascal":
            paths = [root / "VOC2012/JPEGImages" / f"{name}.jpg", root / "VOC2012/SegmentationClassAug" / f"{name}.png"]
        else:
            paths = [root / "COCO2014" / name, root / "COCO2014/annotations" / name.replace(".jpg", ".png")]
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def as_lists(dataset):
    return [[query, list(supports), class_id] for query, supports, class_id in dataset.episodes]


@pytest.mark.parametrize("key, name, fold, shot", [("pascal_fold0_1shot", "pascal", 0, 1),
                                                   ("pascal_fold0_5shot", "pascal", 0, 5),
                                                   ("coco_fold1_1shot", "coco", 1, 1)])
def test_episodes_are_upstreams(tmp_path, key, name, fold, shot):
    expected = EPISODES[key]
    touch_dataset(tmp_path, name, {n for q, s, _ in expected for n in [q, *s]})
    dataset = build_dataset(name, tmp_path, fold, "test", shot)
    assert len(dataset) == len(expected) == 1000
    assert as_lists(dataset) == expected
    assert dataset.class_ids == ([0, 1, 2, 3, 4] if name == "pascal" else list(range(1, 80, 4)))


@pytest.mark.parametrize("split, shot", [("test", 0), ("test", 1), ("val", 5)])
def test_fss_episodes_on_the_bundled_set_are_upstreams(split, shot):
    with pytest.warns(UserWarning, match=r"has [23] of the 240 .* categories: scored over those"):
        dataset = build_dataset("fss", BUNDLED, 0, split, shot)
    assert as_lists(dataset) == EPISODES[f"fss_{split}_{shot}shot"]


def test_pictures_and_masks_are_upstreams():
    """Upstream's FSSDataset (torchvision Resize, ToTensor, Normalize; nearest mask resizing) at 64x64."""
    upstream = np.load(FIXTURES / "upstream_zs_readers_metric.npz")
    for tag, norm in (("clip", CLIP_LSEG_NORM), ("imagenet", IMAGENET_NORM)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = build_dataset("fss", BUNDLED, 0, "test", 0, img_size=64, norm=norm)
        for i in range(2):
            item = dataset[i]
            assert np.abs(item["query_img"] - upstream[f"fss_query_img_{tag}"][i]).max() <= 1e-6
            np.testing.assert_array_equal(item["query_mask"], upstream["fss_query_mask"][i])
    assert item["query_mask"].dtype == np.float32 and set(np.unique(item["query_mask"])) == {0.0, 1.0}


@pytest.mark.parametrize("shape, size", [((375, 500), 480), ((17, 9), 64), ((480, 480), 480), ((100, 30), 96)])
def test_nearest_resizing_is_torchs(shape, size):
    import torch
    import torch.nn.functional as F

    mask = np.random.RandomState(0).randint(0, 21, shape).astype(np.uint8)
    theirs = F.interpolate(torch.from_numpy(mask).float()[None, None], (size, size), mode="nearest")[0, 0].numpy()
    np.testing.assert_array_equal(resize_nearest(mask, size), theirs)


def test_pascal_masks_and_boundaries(tmp_path):
    """The class's pixels are 1, other classes and background 0, PASCAL's 255 boundaries ignored."""
    names = {name for name, _ in pascal_split("val", 1)}
    touch_dataset(tmp_path, "pascal", names)
    dataset = build_dataset("pascal", tmp_path, 1, "test", 0, img_size=8)
    query, _, class_id = dataset.episodes[0]
    annotation = np.zeros((6, 10), np.uint8)
    annotation[1:3, 2:5] = class_id + 1
    annotation[4, :] = 255
    annotation[5, 7:] = (class_id + 2) % 20 + 1
    Image.fromarray(annotation).save(tmp_path / f"VOC2012/SegmentationClassAug/{query}.png")
    Image.fromarray(np.full((6, 10, 3), 90, np.uint8)).save(tmp_path / f"VOC2012/JPEGImages/{query}.jpg")
    item = dataset[0]
    np.testing.assert_array_equal(item["query_mask"], resize_nearest((annotation == class_id + 1).astype(np.float32), 8))
    np.testing.assert_array_equal(item["query_ignore_idx"], resize_nearest((annotation == 255).astype(np.float32), 8))
    assert item["class_name"] == dataset.labels[class_id] and item["query_img"].shape == (3, 8, 8)
    assert item["support_imgs"].shape == (0, 3, 8, 8)


def test_training_episodes_depend_on_seed_and_index_only():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (build_dataset("fss", BUNDLED, 0, "trn", 1, img_size=32) for _ in range(2))
        c = build_dataset("fss", BUNDLED, 0, "trn", 1, img_size=32, seed=1)
    assert a.episodes is None  # drawn per episode, not once in order
    assert [a.episode(i) for i in (5, 0, 5)] == [b.episode(i) for i in (5, 0, 5)]
    assert [a.episode(i) for i in range(30)] != [c.episode(i) for i in range(30)]


@pytest.mark.parametrize("name, layout", [("pascal", "VOC2012/JPEGImages/*.jpg and VOC2012/SegmentationClassAug"),
                                               ("coco", "COCO2014/{train2014,val2014}/*.jpg"),
                                               ("fss", "FSS-1000/<category>/<n>.jpg")])
def test_missing_benchmark_folder_names_the_layout(tmp_path, name, layout):
    with pytest.raises(LangSegError, match=rf"not found under {tmp_path}: expected {re.escape(layout)}"):
        build_dataset(name, tmp_path, 0, "test", 0)


def test_bad_fold_shot_and_incomplete_copy(tmp_path):
    with pytest.raises(LangSegError, match="fold 4 does not exist: the benchmarks have folds 0 to 3"):
        build_dataset("fss", BUNDLED, 4, "test", 0)
    with pytest.raises(LangSegError, match="--nshot -1: the number of support images is 0"):
        build_dataset("fss", BUNDLED, 0, "test", -1)
    touch_dataset(tmp_path, "pascal", ["2007_000033"])
    with pytest.raises(LangSegError, match=r"of the files the 1000 episodes need are missing .*incomplete"):
        build_dataset("pascal", tmp_path, 0, "test", 0)


def test_bundled_set_is_deterministic(tmp_path):
    build_bundled(tmp_path)
    shipped = sorted(p.relative_to(BUNDLED) for p in BUNDLED.rglob("*") if p.is_file())
    assert len(shipped) == 8 * 10 * 2
    assert shipped == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for path in shipped:
        assert (BUNDLED / path).read_bytes() == (tmp_path / path).read_bytes(), path
