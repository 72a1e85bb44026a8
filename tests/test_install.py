"""A wheel built from a clean checkout installs and works from any folder: one top-level name in
site-packages, the package data (the label files, the configs, the bundled ADE20K and VOC datasets) inside it, the
console scripts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USE = """
import numpy as np, lang_seg
from lang_seg.labels import ade20k_labels
from lang_seg.data.bundled import ROOT
from lang_seg.data.registry import get_dataset
assert lang_seg.__file__.startswith({site!r}), lang_seg.__file__
labels = ade20k_labels()
model = lang_seg.load_model(None, backbone="tiny_vitl16", seed=0, backend="mindspore")
out = model.logits(np.zeros((1, 3, 64, 96), np.float32), labels)
voc = get_dataset("pascal_voc", root=ROOT, split="val", mode="testval")  # the second bundled label set
print(len(labels), out.shape, sum(1 for _ in ROOT.glob("ADEChallengeData2016/*/*/*.jpg")), len(voc), voc.num_class)
"""


def clean_checkout(folder: Path) -> Path:
    """The files a clean clone would hold (tracked, or new and not ignored), as they are in the working tree."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    checkout, dist = clean_checkout(tmp_path_factory.mktemp("checkout")), tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(checkout)], check=True, capture_output=True)
    [built] = dist.glob("lang_seg_ms-*.whl")
    return built


@pytest.fixture(scope="module")
def site(tmp_path_factory, wheel):
    """The wheel installed into a folder of its own (``pip install --target``, scripts in ``bin/``)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return target


def run_installed(site: Path, args, cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_package_ships_its_data(site):
    for name in ("ade20k_objectInfo150.txt", "pascal_voc.txt", "pcontext.txt", "citys.txt"):
        assert (site / "lang_seg" / "label_files" / name).is_file(), name
    assert (site / "lang_seg" / "configs" / "bundled_tiny.yaml").is_file()
    bundled = site / "lang_seg" / "data" / "bundled"
    ade, voc = bundled / "ADEChallengeData2016", bundled / "VOCdevkit"
    assert len(list(ade.rglob("*.jpg"))) == 30 and len(list(ade.rglob("*.png"))) == 30
    assert len(list(voc.rglob("*.jpg"))) == 16 and len(list(voc.rglob("*.png"))) == 16
    assert sorted(p.name for p in voc.rglob("*.txt")) == ["train.txt", "trainval.txt", "val.txt"]
    assert (site / "lang_seg" / "modules" / "models_ms" / "csrc" / "onednn_conv.cc").is_file()  # built on first use
    # one top-level name: nothing generic (modules, data, label_files, configs, tests) beside it
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))) == ["bin", "lang_seg"]


def test_load_model_with_ade20k_labels_from_another_folder(site, tmp_path):
    result = run_installed(site, ["-c", USE.format(site=str(site))], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "150 (1, 150, 64, 96) 30 4 21"


def test_installed_package_has_the_export_command_and_runtime(site, tmp_path):
    assert (site / "bin" / "lseg-export").is_file()
    code = "import sys, lang_seg.export as e; print(e.__file__, [m for m in ('torch', 'mindspore') if m in sys.modules])"
    result = run_installed(site, ["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0].startswith(str(site)) and result.stdout.strip().endswith("[]")


@pytest.mark.slow
def test_demo_runs_from_another_folder(site, tmp_path):
    result = run_installed(site, ["-m", "lang_seg.commands.demo", "--out", "demo_out"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "demo_out" / "demo.png").is_file()
    assert (tmp_path / "demo_out" / "labels_mindspore.png").is_file()


FEWSHOT = """
import warnings
from lang_seg.data.fewshot import build_dataset
from lang_seg.data.fewshot.bundled import ROOT
from lang_seg.data.fewshot.splits import coco_split
assert str(ROOT).startswith({site!r}), ROOT
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    dataset = build_dataset("fss", ROOT, 0, "test", 1, img_size=32)
print(len(dataset), dataset[0]["class_name"], len(coco_split("val", 0)[0]))
"""


def test_installed_package_ships_the_few_shot_data(site, tmp_path):
    fewshot = site / "lang_seg" / "data" / "fewshot"
    assert len(list((fewshot / "splits").rglob("*.txt*"))) == 19 and (fewshot / "splits" / "SHA256SUMS").is_file()
    assert len(list((fewshot / "bundled" / "FSS-1000").rglob("*.jpg"))) == 80
    assert len(list((site / "lang_seg" / "label_files").glob("fewshot_*.txt"))) == 3
    result = run_installed(site, ["-c", FEWSHOT.format(site=str(site))], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "27 coin 19217"


def test_console_scripts_run_from_another_folder(site, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(site)}
    for script, words in (("lseg-test", "--eval"), ("lseg-train", "--exp_name"), ("lseg-convert", "src dst"),
                          ("lseg-test-zs", "--benchmark"), ("lseg-train-zs", "--finetune_mode")):
        done = subprocess.run([str(site / "bin" / script), "--help"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and words in done.stdout, (script, done.stderr[-2000:])
    assert {p.name for p in (site / "bin").iterdir()} >= {"lseg-train", "lseg-test", "lseg-demo", "lseg-app",
                                                          "lseg-convert", "lseg-parity", "lseg-bench",
                                                          "lseg-test-zs", "lseg-train-zs"}
