"""The readers of every layout (#21), each on a small copy generated here: masks, ignored values, label ids,
sizes, and the one-line errors for bad data; the registry; the bundled VOC dataset."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from lang_seg import LangSegError
from lang_seg.data import bundled_voc
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.data.registry import DATASETS, dataset_class, dataset_labels, get_dataset, sources
from lang_seg.evaluate import CITYS_SCALES, DEFAULT_SCALES


def save_rgb(path, w, h, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def save_mask(path, mask, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(mask, np.uint8))
    if palette:
        image.putpalette([c for i in range(256) for c in (i, 255 - i, i // 2)])
    image.save(path)


def make_folder(root, labels="cat\ndog\ngrass\n", masks=None):
    """A folder dataset: a JPEG and a PNG image in training, one in validation."""
    if labels is not None:
        (root / "labels.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "labels.txt").write_text(labels)
    masks = masks or {"training/a": [[0, 1], [2, 3]], "training/b": [[3, 3], [0, 1]], "validation/c": [[1, 1], [1, 1]]}
    for i, (name, mask) in enumerate(masks.items()):
        mask = np.kron(np.asarray(mask), np.ones((10, 10), np.int64))
        save_rgb(root / "images" / f"{name}{'.png' if i % 2 else '.jpg'}", mask.shape[1], mask.shape[0])
        save_mask(root / "annotations" / f"{name}.png", mask, palette=i % 2 == 1)
    return root


def targets(dataset):
    return [dataset[i][1].numpy() for i in range(len(dataset))]


# -- the folder format ---------------------------------------------------------------------------
def test_folder_reads_labels_and_counts_mask_values_from_one(tmp_path):
    make_folder(tmp_path)
    train = get_dataset("folder", root=tmp_path, split="train", mode="testval")
    assert train.labels == ["cat", "dog", "grass"] and train.num_class == 3 and train.name == "folder"
    assert [p.name for p in train.images] == ["a.jpg", "b.png"]  # .jpg and .png pictures, palette masks too
    a, b = targets(train)
    assert a[0, 0] == -1 and a[0, 15] == 0 and a[15, 0] == 1 and a[15, 15] == 2  # 0 ignored, k -> label k
    assert b[0, 0] == 2 and b[15, 0] == -1
    assert len(get_dataset("folder", root=tmp_path, split="val")) == 1
    assert len(get_dataset("folder", root=tmp_path, split="trainval", mode="testval")) == 3
    assert train.mask_values(np.array([0, 2])).tolist() == [1, 3]  # written masks count as the folder's do
    assert dataset_labels("folder", str(tmp_path)) == ["cat", "dog", "grass"]


@pytest.mark.parametrize("labels, message", [
    (None, "labels.txt is missing: a folder dataset names its classes there, one label per line"),
    ("\n\n", "labels.txt is empty: write one label per line"),
    ("cat\ndog\ncat\n", "label 'cat' appears twice in .*labels.txt"),
    ("cat\n\ndog\n", "labels.txt has an empty label"),
    ("".join(f"l{i}\n" for i in range(256)), "has 256 labels, but 8-bit masks hold at most 255"),
])
def test_folder_label_file_errors(tmp_path, labels, message):
    make_folder(tmp_path, labels=labels)
    with pytest.raises(LangSegError, match=message):
        get_dataset("folder", root=tmp_path, split="train")


def test_folder_mask_value_above_the_label_count_stops_when_opened(tmp_path):
    make_folder(tmp_path, masks={"training/a": [[0, 1]], "training/b": [[4, 2]], "training/c": [[9, 1]]})
    with pytest.raises(LangSegError, match=r"mask .*annotations/training/b.png holds the value 4, above the label "
                                           r"count 3 of .*labels.txt: mask values are 0 \(ignored\) or 1..3"):
        get_dataset("folder", root=tmp_path, split="train", mode="train")  # before any item is asked for


def test_folder_image_without_mask_and_missing_split(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "annotations/training/b.png").unlink()
    with pytest.raises(LangSegError, match="image .*images/training/b.png has no mask: expected .*training/b.png"):
        get_dataset("folder", root=tmp_path, split="train")
    only_training = make_folder(tmp_path / "other", masks={"training/a": [[1]]})
    with pytest.raises(LangSegError, match="folder dataset .*other has no images/validation/: expected images/"):
        get_dataset("folder", root=only_training, split="val")
    save_rgb(tmp_path / "images/validation/c.png", 20, 20)
    with pytest.raises(LangSegError, match="has two images named c"):
        get_dataset("folder", root=tmp_path, split="val")


# -- PASCAL VOC and SBD ------------------------------------------------------------------------------
def make_voc(root, names=("x", "y"), split="train"):
    base = root / "VOCdevkit/VOC2012"
    for i, name in enumerate(names):
        save_rgb(base / "JPEGImages" / f"{name}.jpg", 40, 30)
        mask = np.zeros((30, 40), np.uint8)
        mask[5:20, 5:20], mask[4, :], mask[25:, 30:] = 15, 255, 20 - i
        save_mask(base / "SegmentationClass" / f"{name}.png", mask, palette=True)  # VOC's are palette PNGs
    (base / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return base


def test_pascal_voc_keeps_class_ids_and_ignores_void(tmp_path):
    base = make_voc(tmp_path)
    make_voc(tmp_path, names=("z",), split="val")
    ds = get_dataset("pascal_voc", root=tmp_path, split="train", mode="testval")
    assert len(ds) == 2 and ds.labels[0] == "background" and ds.num_class == 21 and ds.labels[15] == "person"
    t = targets(ds)[1]
    assert t[0, 0] == 0 and t[10, 10] == 15 and t[4, 7] == -1 and t[28, 35] == 19  # background is a class
    assert len(get_dataset("pascal_voc", root=tmp_path, split="trainval", mode="testval")) == 3  # train.txt + val.txt
    assert ds.mask_values(np.array([0, 15, 20])).tolist() == [0, 15, 20]
    # a training crop larger than the picture is padded with void (ignored), not with background
    big = get_dataset("pascal_voc", root=tmp_path, split="train", mode="train", base_size=40, crop_size=96, seed=0)
    _, target = big[0]
    assert target.shape == (96, 96) and (target[-1] == -1).all() and (target[:, -1] == -1).all()
    save_mask(base / "SegmentationClass/y.png", np.full((30, 40), 30, np.uint8))
    with pytest.raises(LangSegError, match=r"SegmentationClass/y.png holds the value 30, which pascal_voc masks "
                                           r"never use \(they hold 0-20, 255\)"):
        ds[1]
    (base / "JPEGImages/x.jpg").unlink()
    with pytest.raises(LangSegError, match="train.txt lists x, but its image .*JPEGImages/x.jpg is missing"):
        get_dataset("pascal_voc", root=tmp_path, split="train")
    with pytest.raises(LangSegError, match="expected the folder .*VOCdevkit/VOC2012: unpack VOCtrainval"):
        get_dataset("pascal_voc", root=tmp_path / "nowhere", split="train")


def test_pascal_aug_reads_sbd_mat_masks(tmp_path):
    base = tmp_path / "VOCaug/dataset"
    save_rgb(base / "img/2008_000002.jpg", 40, 30)
    mask = np.zeros((30, 40), np.uint8)
    mask[10:20, 10:30] = 7
    (base / "cls").mkdir(parents=True)
    scipy.io.savemat(base / "cls/2008_000002.mat", {"GTcls": {"Segmentation": mask, "Boundaries": 0}})
    (base / "val.txt").write_text("2008_000002\n")
    ds = get_dataset("pascal_aug", root=tmp_path, split="val", mode="testval")
    assert ds.labels == dataset_labels("pascal_voc") and ds.name == "pascal_aug"
    assert np.array_equal(targets(ds)[0], mask.astype(np.int64))
    (base / "cls/2008_000002.mat").write_text("not matlab")
    with pytest.raises(LangSegError, match="cannot read .*2008_000002.mat as an SBD mask"):
        ds[0]


# -- PASCAL-Context and Cityscapes -------------------------------------------------------------------
def test_pcontext_prepared_masks_59_classes(tmp_path):
    base = tmp_path / "VOCdevkit/VOC2010"
    save_rgb(base / "JPEGImages/2008_000008.jpg", 20, 10)
    save_mask(base / "SegmentationClassContext/2008_000008.png", np.array([[0] * 10 + [1] * 5 + [59] * 5] * 10))
    (base / "ImageSets/SegmentationContext").mkdir(parents=True)
    (base / "ImageSets/SegmentationContext/val.txt").write_text("2008_000008\n")
    ds = get_dataset("pcontext", root=tmp_path, split="val", mode="testval")
    assert ds.num_class == 59 and ds.labels[0] == "aeroplane" and ds.labels[-1] == "wood"
    assert targets(ds)[0][0].tolist() == [-1] * 10 + [0] * 5 + [58] * 5  # 0 (the other categories) ignored
    save_mask(base / "SegmentationClassContext/2008_000008.png", np.full((10, 20), 60))
    with pytest.raises(LangSegError, match="holds the value 60, which pcontext masks never use .they hold 0-59"):
        ds[0]


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    image = tmp_path / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"
    save_rgb(image, 8, 2)
    ids = np.array([[0, 1, 6, 7, 8, 9, 11, 33], [26, 24, 31, 32, 23, 21, 10, 30]])
    save_mask(tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png", ids)
    ds = get_dataset("citys", root=tmp_path, split="val", mode="testval")
    assert ds.num_class == 19 and ds.labels[0] == "road" and ds.labels[13] == "car"
    t = targets(ds)[0]
    assert t.tolist() == [[-1, -1, -1, 0, 1, -1, 2, 18], [13, 11, 16, 17, 10, 8, -1, -1]]
    assert ds.mask_values(np.array([0, 13, 18])).tolist() == [7, 26, 33]  # upstream's make_pred for citys
    assert (ds.base_size, ds.crop_size, ds.SCALES) == (2048, 768, CITYS_SCALES)
    with pytest.raises(LangSegError, match="Cityscapes not found: expected the folder .*leftImg8bit/train"):
        get_dataset("citys", root=tmp_path, split="train")


# -- COCO ---------------------------------------------------------------------------------------------------
def make_coco(root):
    save_rgb(root / "val2017/000000000001.jpg", 60, 60)
    save_rgb(root / "val2017/000000000002.jpg", 60, 60)
    square = lambda x0, y0, x1, y1: [[x0, y0, x1, y0, x1, y1, x0, y1]]  # noqa: E731
    annotations = [
        dict(id=1, image_id=1, category_id=1, segmentation=square(5, 5, 45, 45), iscrowd=0),  # person
        dict(id=2, image_id=1, category_id=18, segmentation=square(30, 30, 55, 55), iscrowd=0),  # dog, under it
        dict(id=3, image_id=1, category_id=88, segmentation=square(0, 50, 20, 59), iscrowd=0),  # teddy bear: none
        # a crowd of cars as COCO's uncompressed RLE: column 50 (column-major runs)
        dict(id=4, image_id=1, category_id=3, segmentation=dict(counts=[3000, 60, 540], size=[60, 60]), iscrowd=1),
        dict(id=5, image_id=2, category_id=1, segmentation=square(0, 0, 10, 10), iscrowd=0),  # 100 pixels: left out
    ]
    images = [dict(id=i, file_name=f"{i:012d}.jpg", height=60, width=60) for i in (1, 2)]
    categories = [dict(id=i, name=str(i)) for i in (1, 3, 18, 88)]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_val2017.json").write_text(json.dumps(
        dict(images=images, annotations=annotations, categories=categories)))


def test_coco_masks_from_instances_with_voc_classes(tmp_path, capsys):
    make_coco(tmp_path)
    ds = get_dataset("coco", root=tmp_path, split="val", mode="testval")
    assert ds.ids == [1] and ds.labels == dataset_labels("pascal_voc")  # image 2 has under 1000 such pixels
    t = targets(ds)[0]
    assert t[20, 20] == 15 and t[50, 40] == 12 and t[40, 40] == 15  # person; dog; the first instance wins
    assert t[2, 2] == 0 and t[55, 10] == 0  # background and a non-VOC category are class 0, not ignored
    assert t[10, 50] == 7 and t[40, 50] == 12  # the crowd RLE: car where nothing came before
    assert (tmp_path / "annotations/val_ids.pth").is_file() and "once" in capsys.readouterr().err
    torch.save([1, 2], tmp_path / "annotations/val_ids.pth")  # torch-encoding's file is used as it is
    assert get_dataset("coco", root=tmp_path, split="val").ids == [1, 2]
    (tmp_path / "annotations/val_ids.pth").write_text("damaged")
    with pytest.raises(LangSegError, match="cannot read .*val_ids.pth .*remove it to have it computed again"):
        get_dataset("coco", root=tmp_path, split="val")


def test_coco_without_pycocotools_says_how_to_install(tmp_path, monkeypatch):
    make_coco(tmp_path)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(LangSegError, match=r"the coco dataset needs pycocotools: pip install 'lang-seg-ms\[coco\]'"):
        get_dataset("coco", root=tmp_path, split="val")


# -- the registry, the data module and the bundled VOC dataset --------------------------------------------
def test_registry_sizes_labels_and_sources():
    assert list(DATASETS) == ["ade20k", "folder", "pascal_voc", "pascal_aug", "pcontext", "citys", "coco"]
    for name, cls in DATASETS.items():
        assert cls.NAME == name
        assert (cls.BASE_SIZE, cls.CROP_SIZE, cls.SCALES) == (
            ((2048, 768, CITYS_SCALES) if name == "citys" else (520, 480, DEFAULT_SCALES)))
    assert [len(dataset_labels(n)) for n in ("ade20k", "pascal_voc", "pascal_aug", "pcontext", "citys", "coco")] == [
        150, 21, 21, 59, 19, 21]
    with pytest.raises(LangSegError, match="unknown dataset 'voc': choose one of ade20k, folder, pascal_voc, "
                                           "pascal_aug, pcontext, citys, coco"):
        dataset_class("voc")
    assert sources("ade20k,pascal_voc", "a,b") == [(DATASETS["ade20k"], Path("a")), (DATASETS["pascal_voc"], Path("b"))]
    assert [root for _, root in sources("ade20k,pascal_voc", None)] == [BUNDLED, BUNDLED]
    assert [str(root) for _, root in sources("ade20k,citys", "d")] == ["d", "d"]  # one path holding both
    with pytest.raises(LangSegError, match=r"2 datasets \(ade20k, pascal_voc\) but 3 data paths: give one path per "
                                           r"dataset, in the same order, or one path holding them all"):
        sources("ade20k,pascal_voc", "a,b,c")
    with pytest.raises(LangSegError, match="has an empty name"):
        sources("ade20k,,pascal_voc", None)


def test_datamodule_takes_the_datasets_sizes_and_labels():
    dm = SegmentationDataModule(None, "citys")
    assert (dm.hparams.base_size, dm.hparams.crop_size) == (2048, 768)
    dm = SegmentationDataModule(None, "pascal_voc", batch_size=2, base_size=160, crop_size=128, seed=0)
    assert dm.labels == dataset_labels("pascal_voc")
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 128, 128) and y.shape == (2, 128, 128) and int(y.max()) <= 20
    with pytest.raises(LangSegError, match="unknown dataset 'nope'"):
        SegmentationDataModule(None, "nope")


def test_bundled_voc_dataset_is_a_second_label_set(tmp_path):
    train = get_dataset("pascal_voc", root=BUNDLED, split="train", mode="testval")
    val = get_dataset("pascal_voc", root=BUNDLED, split="val", mode="testval")
    assert (len(train), len(val)) == (bundled_voc.N_TRAIN, bundled_voc.N_VAL)
    values = set()
    for t in targets(train) + targets(val):
        values |= set(np.unique(t).tolist())
    assert {-1, 0, 15} <= values and max(values) <= 20  # void outlines, background, the photo's people
    assert Image.open(train.masks[0]).mode == "P"
    bundled_voc.build(tmp_path)  # deterministic: rebuilding gives the shipped bytes
    for shipped in (BUNDLED / "VOCdevkit").rglob("*.*"):
        assert shipped.read_bytes() == (tmp_path / shipped.relative_to(BUNDLED)).read_bytes(), shipped
