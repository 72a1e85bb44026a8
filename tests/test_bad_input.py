"""Rows of the README's bad-input table not tried elsewhere: each stops with one ``error:`` line, no
traceback, and leaves no half-written file (the table names the test of every row)."""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lang_seg
import test_lseg
import train_lseg
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg import LangSegError

from .helpers import FIXTURES, LABELS, images

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = str(FIXTURES / "upstream_tiny_vitb32.ckpt")  # readout 'project': loads without options
SMALL = ["--base-size", "128", "--crop-size", "96", "--scales", "1.0", "--no-flip"]
TRAIN = ["--data_path", str(BUNDLED), "--batch_size", "4", "--backbone", "tiny_vitb32", "--num_features", "16",
         "--max_epochs", "1", "--no-pretrained", "--seed", "0", "--base_size", "160", "--crop_size", "128"]
CLI = ["--config", str(REPO / "configs/bundled_tiny.yaml"), "--data.data_path", str(BUNDLED),
       "--data.base_size", "160", "--data.crop_size", "128", "--model.backend", "torch"]

pytestmark = pytest.mark.filterwarnings("ignore:21 checkpoint tensors are not used")


def one_line(err: str, message: str) -> str:
    """The stderr of a refused run: no traceback, exactly one ``error:`` line, naming ``message``."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    return errors[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def val_copy(root: Path, damage: str) -> Path:
    """The bundled val split with its 4th picture (of 6) truncated or replaced by noise."""
    shutil.copytree(BUNDLED / "ADEChallengeData2016", root / "ADEChallengeData2016")
    fourth = sorted((root / "ADEChallengeData2016/images/validation").glob("*.jpg"))[3]
    data = fourth.read_bytes()
    fourth.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(len(data)))
    return fourth


@pytest.mark.parametrize("damage, message", [("truncated", "image file is truncated"),
                                             ("corrupt", "cannot identify image file")])
def test_damaged_picture_mid_evaluation_names_it_and_keeps_written_masks(workdir, capsys, damage, message):
    bad = val_copy(workdir / "data", damage)
    argv = ["--weights", UPSTREAM, "--test-val", "--eval", "--data-path", str(workdir / "data"), "--out", "masks"]
    assert test_lseg.main(argv + SMALL) == 2
    line = one_line(capsys.readouterr().err, f"cannot read {bad}")
    assert message in line and line.endswith("replace or remove the file")
    masks = sorted((workdir / "masks").iterdir())
    assert [p.name for p in masks] == [p.stem + ".png" for p in sorted(bad.parent.glob("*.jpg"))[:3]]
    for mask in masks:  # whole, valid label maps; no temporary file beside them
        with Image.open(mask) as im:
            im.load()
            assert im.mode == "P" and im.size == (320, 240)
    assert not (workdir / "logs").exists()  # no figures from a partial evaluation


def test_read_only_output_folder(workdir, capsys):
    picture = BUNDLED / "ADEChallengeData2016/images/validation/ADE_validation_scene_val_000.jpg"
    if os.geteuid() != 0:
        out = workdir / "ro"
        out.mkdir(mode=0o555)
    else:  # root writes anywhere a mode allows: use a folder the kernel refuses
        out = Path("/sys/langseg_out")
        if os.access("/sys", os.W_OK) and not out.parent.is_mount():
            pytest.skip("no read-only folder available")
    argv = ["--weights", UPSTREAM, "--image", str(picture), "--label_src", "sky,grass,other", "--out", str(out)]
    assert test_lseg.main(argv + SMALL) == 2
    line = one_line(capsys.readouterr().err, f"cannot write {out}")
    assert "not writable: choose another one" in line or "read-only file system" in line


def _full_disk_after(n_bytes):
    def write(payload, path, *args, **kwargs):  # a disk that fills up part-way through the file
        with open(path, "wb") as f:
            f.write(b"\0" * n_bytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


def test_full_disk_during_a_lightning_checkpoint_write(tmp_path, monkeypatch):
    import lightning_fabric.plugins.io.torch_io

    from lang_seg.modules.checkpoint_io import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    monkeypatch.setattr(lightning_fabric.plugins.io.torch_io, "_atomic_save", _full_disk_after(4096))
    with pytest.raises(LangSegError) as caught:
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    assert str(caught.value) == (f"cannot write {path} (No space left on device): free some disk space and run "
                                 "again; any earlier file of that name is unchanged")
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_full_disk_during_convert(tmp_path, capsys, monkeypatch):
    from lang_seg.commands.convert import main as convert_main

    dst = tmp_path / "back.ckpt"
    dst.write_bytes(b"earlier file")
    ms_file = tmp_path / "model_ms.ckpt"
    assert convert_main([UPSTREAM, str(ms_file)]) == 0
    monkeypatch.setattr(torch, "save", _full_disk_after(1000))
    assert convert_main([str(ms_file), str(dst)]) == 2
    one_line(capsys.readouterr().err, f"cannot write {dst} (No space left on device)")
    assert dst.read_bytes() == b"earlier file" and sorted(p.name for p in tmp_path.iterdir()) == [
        "back.ckpt", "model_ms.ckpt"]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_an_input_image(value):
    model = lang_seg.load_model(UPSTREAM)
    x = images((1, 3, 64, 64))
    x[0, 1, 5, 7] = value
    with pytest.raises(LangSegError, match=r"images hold 1 NaN or infinite values \(first at index \(0, 1, 5, 7\)\)"):
        model.logits(x, LABELS)
    picture = np.zeros((64, 64, 3), np.float32)
    picture[3, 3, 0] = value
    with pytest.raises(LangSegError, match="the image has NaN or infinite values"):
        model.segment(picture, LABELS, scales=(1.0,), flip=False)


def test_labels_that_do_not_match_the_dataset(workdir, capsys):
    assert train_lseg.main(["fit", *CLI, "--model.labels", "[sky,grass,other]", "--trainer.max_steps", "1"]) == 2
    one_line(capsys.readouterr().err, "the model has 3 labels but the dataset has 150 classes: pass 150 labels")
    assert not (workdir / "checkpoints").exists()
    import pytorch_lightning as pl

    from lang_seg.data.datamodule import SegmentationDataModule
    from lang_seg.modules.lseg_module import LSegModule

    module = LSegModule(backbone="tiny_vitb32", num_features=16, pretrained=False, labels=LABELS)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=workdir)
    with pytest.raises(LangSegError, match="the model has 5 labels but the dataset has 150 classes"):
        trainer.fit(module, datamodule=SegmentationDataModule(str(BUNDLED), batch_size=2, base_size=160, crop_size=128))


def test_crop_size_not_a_multiple_of_the_patch_size(workdir, capsys):
    message = "crop size 100 is not a multiple of the patch size 32 of the backbone: use e.g. 96"
    assert train_lseg.main(["--exp_name", "crop", "--backend", "mindspore"] + TRAIN[:-2] + ["--crop_size", "100"]) == 2
    one_line(capsys.readouterr().err, message)
    assert train_lseg.main(["fit", *CLI, "--data.crop_size", "100"]) == 2
    one_line(capsys.readouterr().err, message)
    assert not (workdir / "checkpoints").exists()


def test_crop_too_small_for_batchnorm_with_one_image_a_batch(workdir, capsys):
    message = ("crop size 32 leaves one value per channel in the decoder's deepest map, and BatchNorm cannot train "
               "on that with batch size 1: use a crop size of 64 or more, or a batch size of 2 or more")
    small = TRAIN[:-2] + ["--crop_size", "32", "--base_size", "40"]
    for backend in ("torch", "mindspore"):
        assert train_lseg.main(["--exp_name", "small", "--backend", backend, *small, "--batch_size", "1"]) == 2
        one_line(capsys.readouterr().err, message)
    assert not (workdir / "checkpoints").exists()


def test_resume_from_files_lightning_cannot_or_should_not_load(workdir, capsys, upstream_fixture):
    class Evil:
        def __reduce__(self):
            return (open, (str(workdir / "created"), "w"))

    torch.save({"state_dict": {}, "x": Evil()}, "evil.ckpt")
    Path("cut.ckpt").write_bytes(Path(UPSTREAM).read_bytes()[:5000])
    from lang_seg.commands.convert import convert_file

    convert_file(UPSTREAM, "ms.ckpt")
    cases = [
        ("evil.ckpt", "holds io.open, which is not a tensor, number or string and would run code when loaded: "
                      "refused; if you trust its source, pass --trust-checkpoint"),
        ("cut.ckpt", "is damaged or truncated"),
        ("ms.ckpt", "is not a torch (Lightning) checkpoint"),
        (UPSTREAM, "is not a Lightning training checkpoint (no 'optimizer_states')"),
    ]
    for path, message in cases:
        assert train_lseg.main(["--exp_name", "r", "--resume", path] + TRAIN) == 2, path
        one_line(capsys.readouterr().err, f"checkpoint {path} {message}")
        assert train_lseg.main(["fit", *CLI, "--ckpt_path", path]) == 2, path
        one_line(capsys.readouterr().err, f"checkpoint {path} {message}")
    assert not (workdir / "created").exists() and not (workdir / "checkpoints").exists()


@pytest.mark.parametrize("argv, message", [
    (["test_lseg.py", "--weights", "cut.ckpt", "--eval", "--data-path", "bundled"],
     "checkpoint cut.ckpt is damaged or truncated"),
    (["-m", "lang_seg.commands.convert", "notes.ckpt", "out.ckpt"],
     "checkpoint notes.ckpt is neither a torch file nor a readable MindSpore checkpoint"),
    (["-m", "lang_seg.tools.parity", "--weights", "cut.ckpt"], "checkpoint cut.ckpt is damaged or truncated"),
])
def test_commands_as_processes_print_one_line_and_exit_2(workdir, argv, message):
    Path("cut.ckpt").write_bytes(Path(UPSTREAM).read_bytes()[:5000])
    Path("notes.ckpt").write_text("not a checkpoint")
    script = [str(REPO / argv[0])] if argv[0].endswith(".py") else argv[:2]
    rest = argv[1:] if argv[0].endswith(".py") else argv[2:]
    run = subprocess.run([sys.executable, *script, *rest], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 2
    one_line(run.stderr, message)
    assert sorted(p.name for p in workdir.iterdir()) == ["cut.ckpt", "notes.ckpt"]
