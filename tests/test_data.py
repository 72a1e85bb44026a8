"""ADE20K dataset, upstream's transforms, the bundled dataset, the data module, prepare_ade20k.py."""
import hashlib
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lang_seg.data import get_dataset
from lang_seg.data.ade20k import ADE20KSegmentation
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.data.transforms import sync_transform, val_sync_transform
from lang_seg import LangSegError

import prepare_ade20k


def make_ade(root: Path, sizes=((40, 30),), split="training", masks=True):
    base = root / "ADEChallengeData2016"
    (base / "images" / split).mkdir(parents=True, exist_ok=True)
    (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(base / "images" / split / f"a{i}.jpg")
        if masks:
            mask = (np.arange(w * h).reshape(h, w) % 151).astype(np.uint8)
            Image.fromarray(mask, mode="L").save(base / "annotations" / split / f"a{i}.png")
    return base


def test_bundled_dataset_layout_and_targets():
    train = ADE20KSegmentation(BUNDLED, "train", crop_size=128, base_size=160, seed=0)
    val = ADE20KSegmentation(BUNDLED, "val", crop_size=128)
    assert len(train) == 24 and len(val) == 6
    x, y = train[0]
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.shape == (128, 128) and y.dtype == torch.int64
    classes = set()
    for i in range(len(val)):
        classes |= set(np.unique(val[i][1].numpy()).tolist())
    assert {2, 9} <= classes  # sky (ADE id 3) and grass (10) shifted to 2 and 9
    assert max(classes) < 150 and min(classes) >= -1


def test_mask_values_shift_to_ignore_and_class_ids(tmp_path):
    make_ade(tmp_path, sizes=((30, 20),))
    x, y = ADE20KSegmentation(tmp_path, "train", mode="testval")[0]
    mask = np.asarray(Image.open(tmp_path / "ADEChallengeData2016/annotations/training/a0.png")).astype(np.int64)
    assert np.array_equal(y.numpy(), mask - 1)  # 0 -> -1 (ignore), 1..150 -> 0..149
    assert x.shape == (3, 20, 30)


def test_train_transform_follows_upstream_recipe():
    img = Image.fromarray(np.random.RandomState(0).randint(0, 255, (300, 400, 3), np.uint8))
    mask = Image.fromarray(np.full((300, 400), 5, np.uint8), mode="L")
    for seed in range(20):
        rng = random.Random(seed)
        out_img, out_mask = sync_transform(img, mask, base_size=520, crop_size=480, rng=rng)
        assert out_img.size == (480, 480) and out_mask.size == (480, 480)
        m = np.asarray(out_mask)
        assert set(np.unique(m)) <= {0, 5}  # padding is 0 -> ignore after the shift
    # a long side of 0.5 x 520 = 260 < 480: padding must appear at the bottom/right
    rng = random.Random(1)
    rng.random = lambda: 0.9  # no mirror
    rng.randint = lambda a, b: a  # smallest scale, crop at the origin
    _, out_mask = sync_transform(img, mask, 520, 480, rng=rng)
    m = np.asarray(out_mask)
    assert m[:195, :260].min() == 5 and m[200:, :].max() == 0 and m[:, 270:].max() == 0


def test_val_transform_short_side_and_centre_crop():
    img = Image.fromarray(np.zeros((200, 500, 3), np.uint8))
    mask_arr = np.zeros((200, 500), np.uint8)
    mask_arr[:, 250:] = 7
    out_img, out_mask = val_sync_transform(img, Image.fromarray(mask_arr, mode="L"), crop_size=100)
    assert out_img.size == (100, 100)
    m = np.asarray(out_mask)
    assert m[:, :50].max() == 0 and m[:, 51:].min() == 7  # the centre of the image


def test_missing_dataset_folder_names_path_and_fix(tmp_path):
    with pytest.raises(LangSegError, match=f"expected the folder {tmp_path}/ADEChallengeData2016.*prepare_ade20k.py"):
        get_dataset("ade20k", root=tmp_path, split="train")
    with pytest.raises(LangSegError, match="unknown dataset 'mapillary': choose one of ade20k, folder, pascal_voc"):
        get_dataset("mapillary", root=tmp_path)


def test_image_without_mask_empty_split_and_bad_files(tmp_path):
    make_ade(tmp_path, masks=False)
    with pytest.raises(LangSegError, match="a0.jpg has no mask: expected .*a0.png"):
        ADE20KSegmentation(tmp_path, "train")
    shutil.rmtree(tmp_path / "ADEChallengeData2016")
    make_ade(tmp_path, sizes=())
    with pytest.raises(LangSegError, match="has no images"):
        ADE20KSegmentation(tmp_path, "train")
    base = make_ade(tmp_path, sizes=((40, 30), (40, 30)))
    (base / "images/training/a1.jpg").write_bytes(b"\xff\xd8\xff truncated")
    ds = ADE20KSegmentation(tmp_path, "train", mode="testval")
    with pytest.raises(LangSegError, match="cannot read .*a1.jpg"):
        ds[1]
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(base / "annotations/training/a0.png")
    with pytest.raises(LangSegError, match="a0.png is 10x10 but its image is 40x30"):
        ds[0]


def test_datamodule_batches(tmp_path):
    dm = SegmentationDataModule(str(BUNDLED), batch_size=2, base_size=160, crop_size=128, seed=0)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 128, 128) and y.shape == (2, 128, 128)
    assert len(dm.val_dataloader()) == 3


def test_prepare_checks_sha1_and_unpacks(tmp_path):
    src = make_ade(tmp_path / "src", sizes=((8, 8),))
    zip_dir = tmp_path / "downloads"
    zip_dir.mkdir()
    zip_path = zip_dir / prepare_ade20k.ZIP_NAME
    with zipfile.ZipFile(zip_path, "w") as z:
        for f in src.rglob("*"):
            z.write(f, f.relative_to(src.parent))
    digest = hashlib.sha1(zip_path.read_bytes()).hexdigest()
    with pytest.raises(LangSegError, match="has SHA1 .* expected"):
        prepare_ade20k.prepare(tmp_path / "data", zip_dir)
    target = prepare_ade20k.prepare(tmp_path / "data", zip_dir, sha1=digest)
    assert len(ADE20KSegmentation(tmp_path / "data", "train")) == 1
    assert target == tmp_path / "data" / "ADEChallengeData2016"
    assert prepare_ade20k.main(["--data_path", str(tmp_path / "data")]) == 0  # already there: nothing to do
    assert prepare_ade20k.main(["--data_path", str(tmp_path / "x"), "--download-dir", str(tmp_path)]) == 2
