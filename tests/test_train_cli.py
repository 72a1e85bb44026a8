"""train_lseg.py as a user runs it: upstream flags, both backends, logs, checkpoints, resume, errors."""
import csv
import os

import pytest
import torch

import lang_seg
from data.bundled import ROOT as BUNDLED

import train_lseg

QUICK = ["--data_path", str(BUNDLED), "--batch_size", "2", "--backbone", "tiny_vitb32", "--num_features", "16",
         "--max_epochs", "2", "--no-pretrained", "--seed", "0", "--base_lr", "0.16", "--base_size", "160",
         "--crop_size", "128", "--widehead", "--no-scaleinv"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_train_writes_logs_and_checkpoint_then_resumes(workdir, capsys, backend):
    assert train_lseg.main(["--exp_name", "run", "--backend", backend, "--max_steps", "4"] + QUICK) == 0
    out = capsys.readouterr().out
    last = workdir / "checkpoints/run/version_0/checkpoints/last.ckpt"
    assert f"checkpoint: {last}" in out and "train_loss" in out
    rows = list(csv.DictReader(open(workdir / "checkpoints/run/version_0/metrics.csv")))
    assert sum(1 for r in rows if r.get("train_loss")) == 4
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["backend"] == backend
    assert lang_seg.load_model(str(last), backend="torch").options.backbone == "tiny_vitb32"
    # as upstream, the next run of the experiment resumes from its last checkpoint
    assert train_lseg.main(["--exp_name", "run", "--backend", backend, "--max_steps", "6"] + QUICK) == 0
    ckpt = torch.load(workdir / "checkpoints/run/version_1/checkpoints/last.ckpt", map_location="cpu",
                      weights_only=False)
    assert ckpt["global_step"] == 6


def test_errors_are_one_line(workdir, capsys):
    assert train_lseg.main(["--exp_name", "x", "--data_path", str(workdir / "nowhere")] + QUICK[2:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ADE20K not found: expected the folder") and "\n" not in err
    assert train_lseg.main(["--exp_name", "x", "--aux"] + QUICK) == 2
    assert "--aux is not supported" in capsys.readouterr().err
    assert train_lseg.main(["--exp_name", "x", "--resume", "missing.ckpt"] + QUICK) == 2
    assert "missing.ckpt does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_lseg.main(["--exp_name", "x", "--backbone", "vit_h14"])
    assert not os.path.exists(workdir / "checkpoints/x")


def test_non_finite_loss_stops_with_step_number(workdir, capsys):
    code = train_lseg.main(["--exp_name", "nan", "--max_steps", "3", "--base_lr", "1e30"] + QUICK[:-8] +
                           ["--base_size", "160", "--crop_size", "128"])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss" in err and "at step" in err
