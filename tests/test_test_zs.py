"""test_lseg_zs.py as users start it: upstream's README command on the bundled FSS-1000-layout set, on both
backends with the same figures, its log and JSON; bad input in one line; zero-shot checkpoints refused by test_lseg.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lang_seg
from lang_seg.checkpoint import save_checkpoint
from lang_seg.commands import test as test_command
from lang_seg.commands import test_zs

from .helpers import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
# upstream's README command (FSS), with the tiny model's backbone and small pictures
README = ["--backbone", "tiny_resnet", "--module", "clipseg_DPT_test_v2", "--dataset", "fss", "--widehead",
          "--no-scaleinv", "--arch_option", "0", "--ignore_index", "255", "--fold", "0", "--nshot", "0"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random tiny zero-shot model whose masks are neither empty nor full on the bundled set (seed 2)."""
    model = lang_seg.load_model(None, backbone="tiny_resnet", seed=2, features=16)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_zs.ckpt"
    save_checkpoint(path, model.state_dict(), model.options)
    return path


def run_command(args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "test_lseg_zs.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def test_readme_command_gives_the_same_figures_on_both_backends(tmp_path, checkpoint):
    figures = {}
    for backend in ("torch", "mindspore"):
        result = run_command([*README, "--weights", str(checkpoint), "--img-size", "64", "--backend", backend],
                             cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "bundled tiny FSS-1000-layout set" in result.stdout
        assert "FSS-1000 fold 0, 0-shot: 30 episodes of 30, 64x64, 3 classes" in result.stdout
        assert "mIoU:" in result.stderr and "FB-IoU:" in result.stderr  # the progress bar
        line = [l for l in result.stdout.splitlines() if l.startswith("Fold 0, 0-shot ==> mIoU: ")]
        assert len(line) == 1
        record = json.loads((tmp_path / "logs/fewshot/log_fewshot-test_nshot0_fss.json").read_text())
        assert record["backend"] == backend and record["episodes"] == 30
        assert [row["class"] for row in record["per_class"]] == ["coin", "doughnut", "moon"]
        figures[backend] = (record["miou"], record["fb_iou"], line[0])
    torch_run, ms_run = figures["torch"], figures["mindspore"]
    assert 1 < torch_run[0] < 99 and 1 < torch_run[1] < 99  # neither empty nor perfect masks
    assert ms_run[0] == pytest.approx(torch_run[0], abs=1e-3) and ms_run[1] == pytest.approx(torch_run[1], abs=1e-3)
    assert ms_run[2] == torch_run[2]  # the printed result line, to upstream's two decimals
    log = (tmp_path / "logs/fewshot/log_fewshot-test_nshot0_fss.txt").read_text().splitlines()
    assert len(log) == 6 and log[0].startswith("# ") and log[1] == str(checkpoint) and log[2] == torch_run[2]


def test_one_shot_and_batches(tmp_path, checkpoint, capsys, monkeypatch):
    """1-shot on FSS-1000 tests every image but each category's 1.jpg (its support); two runs score the same
    (seeded episodes), in batches of episodes as one at a time."""
    monkeypatch.chdir(tmp_path)
    lines = {}
    for bsz in ("1", "4"):
        assert test_zs.main([*README[:-2], "--nshot", "1", "--weights", str(checkpoint), "--img-size", "64",
                             "--bsz", bsz, "--episodes", "12"]) == 0
        out = capsys.readouterr().out
        assert "12 episodes of 27" in out  # 1.jpg of each of the 3 categories is the support
        lines[bsz] = [l for l in out.splitlines() if l.startswith("Fold 0, 1-shot")]
    assert lines["1"] == lines["4"]


@pytest.mark.parametrize("args, message", [
    (["--fold", "4"], "fold 4 does not exist: the benchmarks have folds 0 to 3"),
    (["--nshot", "-1"], "--nshot -1: the number of support images is 0 (zero-shot) or more"),
    (["--dataset", "pascal", "--datapath", "{tmp}"], "PASCAL-5i not found under {tmp}: expected VOC2012/JPEGImages/*.jpg"),
    (["--dataset", "coco", "--datapath", "{tmp}"], "COCO-20i not found under {tmp}: expected COCO2014/"),
    (["--benchmark", "c2p"], "benchmark c2p (COCO to PASCAL) is among upstream's --benchmark choices but upstream has no"),
    (["--dataset", "ade20k"], "'ade20k' is not a few-shot benchmark: choose pascal, coco or fss (test_lseg.py"),
    (["--weights", "{lseg}"], "holds LSegNet, not one of upstream's zero-shot networks (its options or its head block "
                              "say so): evaluate it with test_lseg.py"),
    (["--weights", "{tmp}/none.ckpt"], "checkpoint {tmp}/none.ckpt does not exist: check --weights"),
    (["--img-size", "100"], "--img-size 100 is not a multiple of 32, the patch size (or stride) of tiny_resnet: use "
                            "e.g. 96"),
])
def test_bad_input_is_one_line(tmp_path, checkpoint, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    values = dict(tmp=str(tmp_path), lseg=str(FIXTURES / "upstream_tiny_vitl16.ckpt"))
    args = [a.format(**values) for a in args]
    weights = [] if "--weights" in args else ["--weights", str(checkpoint)]
    assert test_zs.main([*weights, "--nshot", "0", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message.format(**values) in err, err
    assert not (tmp_path / "logs").exists()  # nothing written


def test_bad_input_as_a_process(tmp_path, checkpoint):
    result = run_command(["--weights", str(checkpoint), "--fold", "7"], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: fold 7 does not exist: the benchmarks have folds 0 to 3"]


def test_test_lseg_refuses_a_zero_shot_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = FIXTURES / "upstream_zs_tiny_resnet.ckpt"
    assert test_command.main(["--weights", str(path), "--eval", "--data-path", "bundled"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"error: checkpoint {path} holds one of upstream's zero-shot networks (tiny_resnet): evaluate it with " \
           "test_lseg_zs.py" in err
