"""A non-editable install (what ``pip install .`` or a wheel gives) works from any folder:
the package data (ADE20K's class list, the bundled dataset) travels with it."""
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
assert lang_seg.__file__.startswith({site!r}), lang_seg.__file__
labels = ade20k_labels()
model = lang_seg.load_model(None, backbone="tiny_vitl16", seed=0, backend="mindspore")
out = model.logits(np.zeros((1, 3, 64, 96), np.float32), labels)
print(len(labels), out.shape, sum(1 for _ in ROOT.rglob("*.jpg")))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``pip install --target`` of a copy of the sources (the build leaves nothing in the checkout)."""
    build, target = tmp_path_factory.mktemp("build"), tmp_path_factory.mktemp("site")
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, build / name)
    for package in ("lang_seg", "modules", "data", "label_files", "configs"):
        shutil.copytree(ROOT / package, build / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(build)], check=True, capture_output=True)
    return target


def run_installed(site: Path, args, cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_package_ships_its_data(site):
    assert (site / "lang_seg" / "label_files" / "ade20k_objectInfo150.txt").is_file()
    assert (site / "lang_seg" / "configs" / "bundled_tiny.yaml").is_file()
    assert len(list((site / "lang_seg" / "data" / "bundled").rglob("*.jpg"))) == 30
    assert len(list((site / "lang_seg" / "data" / "bundled").rglob("*.png"))) == 30
    # one top-level name: nothing generic (modules, data, label_files, configs, tests) beside it
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))) == ["bin", "lang_seg"]


def test_load_model_with_ade20k_labels_from_another_folder(site, tmp_path):
    result = run_installed(site, ["-c", USE.format(site=str(site))], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "150 (1, 150, 64, 96) 30"


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
