"""train_lseg.py as a user runs it: upstream flags, both backends, logs, checkpoints, resume, errors."""
import csv
import os
import re

import pytest
import torch

import lang_seg
from lang_seg.data.bundled import ROOT as BUNDLED

import train_lseg

QUICK = ["--data_path", str(BUNDLED), "--batch_size", "2", "--backbone", "tiny_vitb32", "--num_features", "16",
         "--max_epochs", "2", "--no-pretrained", "--seed", "0", "--base_lr", "0.16", "--base_size", "160",
         "--crop_size", "128", "--widehead", "--no-scaleinv"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("backend", ["torch", pytest.param("mindspore", marks=pytest.mark.slow)])
def test_train_writes_logs_and_checkpoint_then_resumes(workdir, capsys, backend):
    assert train_lseg.main(["--exp_name", "run", "--backend", backend, "--max_steps", "4"] + QUICK) == 0
    out = capsys.readouterr().out
    last = workdir / "checkpoints/run/version_0/checkpoints/last.ckpt"
    assert f"checkpoint: {last.relative_to(workdir)}" in out and "train_loss" in out
    # the batch times the command prints (lang_seg.tools.bench_commands reads them)
    assert re.search(r"^training batches: 4, first [\d.]+ s, median of the rest [\d.]+ s$", out, re.M), out
    rows = list(csv.DictReader(open(workdir / "checkpoints/run/version_0/metrics.csv")))
    assert sum(1 for r in rows if r.get("train_loss")) == 4
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["backend"] == backend
    assert lang_seg.load_model(str(last), backend="torch").options.backbone == "tiny_vitb32"
    # as upstream, the next run of the experiment resumes from its last checkpoint
    assert train_lseg.main(["--exp_name", "run", "--backend", backend, "--max_steps", "6"] + QUICK) == 0
    assert "training batches: 2, first" in capsys.readouterr().out  # the resumed run's own batches
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


CLI_QUICK = ["--config", "configs/bundled_tiny.yaml", "--data.data_path", str(BUNDLED), "--data.base_size", "160",
             "--data.crop_size", "128", "--trainer.enable_progress_bar", "false"]


@pytest.mark.slow
def test_cli_form_with_yaml_config(workdir, capsys):
    """`fit --config configs/bundled_tiny.yaml` (the README's run), then `validate` from its checkpoint on
    the other backend; accumulation and the learning rate follow the config."""
    os.symlink(os.path.join(os.path.dirname(train_lseg.__file__), "configs"), workdir / "configs")
    args = ["fit", *CLI_QUICK, "--trainer.max_epochs", "2", "--model.accumulate_grad_batches", "2"]
    assert train_lseg.main(args + ["--model.backend", "torch"]) == 0
    out = capsys.readouterr().out
    version = workdir / "checkpoints/bundled_tiny/version_0"
    last = version / "checkpoints/last.ckpt"
    assert f"checkpoint: {last.relative_to(workdir)}" in out and "pix_acc" in out
    assert (version / "config.yaml").is_file() and (version / "metrics.csv").is_file()
    assert not [p for p in version.rglob("*") if p.name.endswith(".tmp")]
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    # 24 images, batch 4, 2 batches per step, 2 epochs; lr = base_lr / 16 * batch_size
    assert ckpt["global_step"] == 6 and ckpt["epoch"] == 1
    assert ckpt["hyper_parameters"]["batch_size"] == 4 and ckpt["hyper_parameters"]["max_epochs"] == 2
    assert ckpt["optimizer_states"][0]["param_groups"][1]["initial_lr"] == pytest.approx(0.16 / 16 * 4 * 10)
    assert train_lseg.main(["validate", *CLI_QUICK, "--ckpt_path", str(last), "--model.backend", "mindspore"]) == 0
    rows = list(csv.DictReader(open(version / "metrics.csv")))
    torch_acc = [float(r["pix_acc"]) for r in rows if r.get("pix_acc")][-1]
    ms_acc = float(list(csv.DictReader(open(workdir / "checkpoints/bundled_tiny/version_1/metrics.csv")))[-1]["pix_acc"])
    assert abs(ms_acc - torch_acc) <= 1e-4


def test_cli_form_errors(workdir, capsys):
    os.symlink(os.path.join(os.path.dirname(train_lseg.__file__), "configs"), workdir / "configs")
    assert train_lseg.main(["fit", *CLI_QUICK, "--data.data_path", str(workdir / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ADE20K not found") and "\n" not in err
    assert not (workdir / "checkpoints").exists()
    assert train_lseg.main(["fit", *CLI_QUICK, "--model.backbone", "vit_h14"]) == 2
    assert "error: unknown backbone 'vit_h14'" in capsys.readouterr().err
    assert train_lseg.main(["fit", *CLI_QUICK, "--model.backend", "jax"]) == 2
    assert "error: unknown backend 'jax'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_lseg.main(["fit", *CLI_QUICK, "--model.nonsense", "3"])
    assert not (workdir / "checkpoints").exists()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from lang_seg.modules.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def killed_mid_write(checkpoint, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(lang_seg.LangSegError, match=f"cannot write {path} \\(disk full\\)"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def _clean_env(tmp_path):
    """The environment a user's shell gives: none of this suite's settings (conftest.py), MindSpore's
    per-user cache under ``tmp_path``."""
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSEG_", "HF_", "MS_", "XDG_"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return sys.executable, env


def test_mindspore_run_is_quiet_and_leaves_only_its_checkpoints(tmp_path):
    """A healthy MindSpore training run (#19): no MindSpore warning, no DeprecationWarning, and nothing in the
    folder it started from but ``checkpoints/``."""
    import subprocess
    from pathlib import Path

    python, env = _clean_env(tmp_path)
    (tmp_path / "run").mkdir()
    run = subprocess.run(
        [python, str(Path(train_lseg.__file__).resolve()), "--exp_name", "t", "--backend", "mindspore",
         "--backbone", "tiny_vitb32", "--num_features", "16", "--crop_size", "64", "--base_size", "72",
         "--batch_size", "2", "--max_steps", "2", "--no-pretrained", "--seed", "0"],
        cwd=tmp_path / "run", env=env, capture_output=True, text=True, timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "training batches: 2" in out
    assert "[WARNING] ME" not in out and "DeprecationWarning" not in out, out
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoints"]


def test_mindspore_files_go_to_the_cache_folder(tmp_path):
    """What MindSpore writes when a graph fails to compile (``rank_0/om/analyze_fail.ir``) goes to the
    per-user cache folder, not the working directory."""
    import subprocess

    python, env = _clean_env(tmp_path)
    (tmp_path / "run").mkdir()
    script = tmp_path / "fails_to_compile.py"  # MindSpore compiles from a file's source
    script.write_text("import numpy as np, mindspore as ms\n"
                      "from lang_seg.backends.mindspore_backend import use_device\n"
                      "use_device('cpu')\n"
                      "@ms.jit\ndef f(x):\n    return x.reshape((7, 7))\n"
                      "try:\n    f(ms.from_numpy(np.ones((2, 3), np.float32)))\n"
                      "except ValueError:\n    print('compile failed')\n")
    run = subprocess.run([python, str(script)], cwd=tmp_path / "run", env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.stdout.strip() == "compile failed", run.stdout + run.stderr
    assert os.listdir(tmp_path / "run") == []
    assert (tmp_path / "cache/lang_seg/mindspore/rank_0/om/analyze_fail.ir").is_file()
