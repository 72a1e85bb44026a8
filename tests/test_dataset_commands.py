"""train_lseg.py and test_lseg.py on any dataset (#21): the model learns and is scored with the dataset's own
labels, sizes and scales; bad datasets stop with one line before anything is trained or written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lang_seg
import test_lseg
from lang_seg.commands import train
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.registry import dataset_labels

from .test_datasets import make_folder

REPO = Path(__file__).resolve().parent.parent
TINY = ["--backbone", "tiny_vitb32", "--num_features", "16", "--batch_size", "2", "--no-pretrained",
        "--accelerator", "cpu", "--devices", "1", "--base_size", "160", "--crop_size", "128"]
EVAL = ["--scales", "1.0", "--no-flip", "--base-size", "64", "--crop-size", "64"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    from lang_seg.checkpoint import save_checkpoint

    model = lang_seg.load_model(None, backbone="tiny_vitb32", features=16, seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "random.ckpt"
    save_checkpoint(path, model.state_dict(), model.options)
    return path


def test_training_takes_the_datasets_labels(workdir):
    args = train.build_parser().parse_args(["--exp_name", "voc", "--dataset", "pascal_voc", *TINY])
    module, datamodule, *_ = train.build(args)
    assert module.labels == dataset_labels("pascal_voc") and module.num_classes == 21
    assert datamodule.trainset.num_class == 21 and module.hparams.labels == module.labels  # saved in checkpoints
    args = train.build_parser().parse_args(["--exp_name", "c", "--dataset", "citys", "--data_path", "x", *TINY[:-4]])
    with pytest.raises(lang_seg.LangSegError, match="Cityscapes not found: expected the folder x/leftImg8bit/train"):
        train.build(args)  # the dataset's own sizes (2048, 768) without --base_size/--crop_size
    assert not (workdir / "checkpoints").exists()


def test_cli_form_takes_the_datasets_labels_unless_given():
    from lang_seg.modules.cli import LSegCLI

    base = ["--config", str(REPO / "configs/bundled_tiny.yaml"), "--model.backend", "torch"]
    cli = LSegCLI(args=base + ["--data.dataset", "pascal_voc"], run=False)
    assert cli.model.labels == dataset_labels("pascal_voc") and cli.datamodule.hparams.dataset == "pascal_voc"
    assert len(LSegCLI(args=base, run=False).model.labels) == 150
    assert LSegCLI(args=base + ["--model.labels", "[cat, dog]"], run=False).model.labels == ["cat", "dog"]


def test_eval_scores_a_folder_dataset_with_its_labels(workdir, random_ckpt, capsys):
    make_folder(workdir / "mine")
    argv = ["--weights", str(random_ckpt), "--eval", "--test-val", "--dataset", "folder", "--data-path", "mine",
            "--split", "train", "--out", "masks", *EVAL]
    assert test_lseg.main(argv) == 0
    out = capsys.readouterr().out
    assert "mean over all 3 classes" in out
    record = json.loads(Path("logs/log_test_default_folder.json").read_text())
    assert [row["class"] for row in record["per_class"]] == ["cat", "dog", "grass"] and record["images"] == 2
    assert "# per-class IoU: cat: " in Path("logs/log_test_default_folder.txt").read_text()
    written = np.asarray(Image.open("masks/a.png"))
    assert written.shape == (20, 20) and set(np.unique(written)) <= {1, 2, 3}  # the folder's own values


def test_eval_uses_the_datasets_sizes_and_writes_its_own_mask_values(workdir, random_ckpt, capsys):
    from lang_seg.data.cityscapes import LABEL_IDS

    for i in range(1):  # one picture: at Cityscapes' sizes even a tiny model takes a while
        image = workdir / f"citys/leftImg8bit/val/ulm/ulm_00000{i}_000019_leftImg8bit.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 64, 3), np.uint8)).save(image)
        mask = workdir / f"citys/gtFine/val/ulm/ulm_00000{i}_000019_gtFine_labelIds.png"
        mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 64), 26, np.uint8)).save(mask)
    argv = ["--weights", str(random_ckpt), "--test-val", "--dataset", "citys", "--data-path", "citys",
            "--scales", "1.0", "--no-flip", "--out", "masks"]
    assert test_lseg.main(argv) == 0
    assert "base size 2048, crop 768" in capsys.readouterr().out  # Cityscapes' own, as upstream
    written = set()
    for path in Path("masks").glob("*.png"):
        written |= set(np.unique(np.asarray(Image.open(path))).tolist())
    assert written and written <= set(LABEL_IDS)  # label ids, not train ids + 1


BAD = [
    (["train_lseg.py", "--exp_name", "x", "--dataset", "folder", "--data_path", "bad_values", *TINY],
     "bad_values/annotations/training/b.png holds the value 7, above the label count 3 of bad_values/labels.txt"),
    (["train_lseg.py", "--exp_name", "x", "--dataset", "folder", "--data_path", "no_labels", *TINY],
     "no_labels/labels.txt is missing"),
    (["train_lseg.py", "--exp_name", "x", "--dataset", "folder", "--data_path", "no_mask", *TINY],
     "no_mask/images/training/b.png has no mask: expected"),
    (["train_lseg.py", "--exp_name", "x", "--dataset", "ade20k,pascal_voc", "--data_path", "a,b,c", *TINY],
     "2 datasets (ade20k, pascal_voc) but 3 data paths"),
    (["train_lseg.py", "--exp_name", "x", "--dataset", "voc", *TINY],
     "unknown dataset 'voc': choose one of ade20k, folder, pascal_voc, pascal_aug, pcontext, citys, coco"),
    (["train_lseg.py", "fit", "--config", str(REPO / "configs/bundled_tiny.yaml"), "--data.dataset", "folder",
      "--data.data_path", "dup_labels"], "label 'cat' appears twice in dup_labels/labels.txt"),
    (["test_lseg.py", "--weights", "mine/labels.txt", "--eval", "--dataset", "folder", "--data-path", "bad_values",
      "--split", "train"], "holds the value 7, above the label count 3"),
]


def bad_data(workdir):
    make_folder(workdir / "mine")
    make_folder(workdir / "bad_values", masks={"training/a": [[1]], "training/b": [[7]], "validation/c": [[1]]})
    make_folder(workdir / "no_labels", labels=None)
    make_folder(workdir / "no_mask").joinpath("annotations/training/b.png").unlink()
    make_folder(workdir / "dup_labels", labels="cat\ndog\ncat\n")
    return sorted(p.name for p in workdir.iterdir())


@pytest.mark.parametrize("argv, message", BAD, ids=[f"{a[0]}:{m[:30]}" for a, m in BAD])
def test_bad_datasets_stop_with_one_line_before_anything_is_written(workdir, capsys, argv, message):
    before = bad_data(workdir)
    main = train.main if argv[0] == "train_lseg.py" else test_lseg.main
    assert main(argv[1:]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in workdir.iterdir()) == before  # no checkpoints/, logs/ or outputs/


@pytest.mark.parametrize("argv, message", [BAD[0], BAD[-1]], ids=["train_lseg.py", "test_lseg.py"])
def test_bad_datasets_as_users_start_the_commands(workdir, argv, message):
    before = bad_data(workdir)
    run = subprocess.run([sys.executable, str(REPO / argv[0]), *argv[1:]], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(lines) == 1 and message in lines[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr and sorted(p.name for p in workdir.iterdir()) == before


@pytest.mark.slow
def test_train_then_evaluate_the_bundled_voc_dataset_from_another_folder(workdir):
    """The README's second label set: train on the bundled VOC layout, score it with VOC's 21 classes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(REPO / "train_lseg.py"), "--exp_name", "voc", "--dataset", "pascal_voc",
                          "--max_steps", "2", "--base_lr", "0.16", "--seed", "0", "--backend", "torch", *TINY],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = workdir / "checkpoints/voc/version_0/checkpoints/last.ckpt"
    run = subprocess.run([sys.executable, str(REPO / "test_lseg.py"), "--weights", str(ckpt), "--eval", "--dataset",
                          "pascal_voc", "--data-path", str(BUNDLED), *EVAL], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mean over all 21 classes" in run.stdout
    record = json.loads((workdir / "logs/log_test_default_pascal_voc.json").read_text())
    assert [row["class"] for row in record["per_class"]] == dataset_labels("pascal_voc") and record["images"] == 4
