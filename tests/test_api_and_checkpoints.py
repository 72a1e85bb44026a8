"""load_model's contract, checkpoint reading and errors, the demo command."""
import numpy as np
import pytest

import lang_seg
from lang_seg import LangSegError
from lang_seg.checkpoint import infer_options, read_checkpoint, save_checkpoint
from lang_seg.commands.demo import main as demo_main

from .helpers import LABELS, images


def test_seed_gives_identical_weights_on_both_backends():
    a = lang_seg.load_model(None, backbone="tiny_vitl16", seed=7)
    b = lang_seg.load_model(None, backbone="tiny_vitl16", backend="mindspore", seed=7)
    c = lang_seg.load_model(None, backbone="tiny_vitl16", seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert set(sa) == set(sb)
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not np.array_equal(sa["scratch.head1.weight"], sc["scratch.head1.weight"])


def test_project_checkpoint_round_trip_keeps_options(tmp_path):
    model = lang_seg.load_model(None, backbone="tiny_vitl16", arch_option=2, block_depth=2, activation="tanh",
                                readout="add", features=8, seed=0)
    save_checkpoint(tmp_path / "m.ckpt", model.state_dict(), model.options)
    ckpt = read_checkpoint(tmp_path / "m.ckpt")
    assert ckpt.hyper_parameters["arch_option"] == 2 and ckpt.hyper_parameters["readout"] == "add"
    again = lang_seg.load_model(str(tmp_path / "m.ckpt"))
    assert again.options == model.options
    x = images((1, 3, 64, 64))
    np.testing.assert_array_equal(again.logits(x, LABELS), model.logits(x, LABELS))
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed away


def test_options_priority_explicit_then_hparams_then_shapes(upstream_fixture):
    path, _, _ = upstream_fixture("tiny_vitb32")
    state = read_checkpoint(path).state
    assert infer_options(state).readout == "project"  # from the weights
    assert infer_options(state, {"num_features": 16, "activation": "tanh"}).activation == "tanh"
    assert infer_options(state, {"activation": "tanh"}, activation="relu").activation == "relu"
    assert infer_options(state).backbone == "tiny_vitb32"


def test_options_the_weights_cannot_tell_are_asked_for(upstream_fixture):
    path, meta, _ = upstream_fixture("tiny_vitl16")  # readout 'add', arch_option 1, no hyper-parameters
    assert meta["options"]["readout"] == "add"
    with pytest.raises(LangSegError, match="pass readout='ignore' or 'add'"):  # not guessed as 'ignore'
        lang_seg.load_model(str(path))
    with pytest.raises(LangSegError, match=r"pass arch_option .*\(missing: arch_option, block_depth, activation\)"):
        lang_seg.load_model(str(path), readout="add")
    with pytest.raises(LangSegError, match=r"\(missing: activation\)"):  # the head's activation is not guessed
        lang_seg.load_model(str(path), readout="add", arch_option=1, block_depth=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weights="does/not/exist.ckpt"), "does not exist"),
        (dict(weights=None), "pass backbone="),
        (dict(weights=None, backbone="resnet50"), "unknown backbone 'resnet50'"),
        (dict(weights=None, backbone="tiny_vitb32", backend="jax"), "unknown backend"),
        (dict(weights=None, backbone="tiny_vitb32", colour="red"), "unknown option"),
    ],
)
def test_load_model_errors(kwargs, message):
    with pytest.raises(LangSegError, match=message):
        lang_seg.load_model(**kwargs)


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("hello")
    with pytest.raises(LangSegError, match="neither a torch file nor a readable MindSpore checkpoint"):
        lang_seg.load_model(str(bad))
    import torch

    torch.save({"state_dict": {"model.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(LangSegError, match="no 'net.\\*' weights"):
        lang_seg.load_model(str(tmp_path / "other.ckpt"))


@pytest.mark.slow
def test_demo_writes_both_label_maps(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo_main(["--out", str(out), "--labels", "person,dog,other"]) == 0
    text = capsys.readouterr().out
    assert "label maps agree on 100.000% of pixels" in text
    for name in ("demo.png", "labels_torch.png", "labels_mindspore.png"):
        assert (out / name).stat().st_size > 0
    from PIL import Image

    a = np.asarray(Image.open(out / "labels_torch.png"))
    b = np.asarray(Image.open(out / "labels_mindspore.png"))
    assert a.shape == (288, 384) and np.array_equal(a, b) and a.max() < 3


def test_demo_bad_input_is_one_line(tmp_path, capsys):
    assert demo_main(["--image", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"error: image {tmp_path / 'missing.jpg'} does not exist"
    assert demo_main(["--labels", "cat,,dog", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_convert_cli_bad_input_is_one_line(tmp_path, capsys, upstream_fixture):
    from lang_seg.commands.convert import main as convert_main

    assert convert_main([str(tmp_path / "missing.ckpt"), str(tmp_path / "out.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.ckpt does not exist" in err
    path, _, _ = upstream_fixture("tiny_vitb32")
    assert convert_main([str(path), str(tmp_path / "out.ckpt"), "--backbone", "tiny_vitl16"]) == 2
    assert "does not fit the network" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written


# A process of its own, started without this suite's conftest.py (which sets HF_HUB_OFFLINE early): it counts
# every connection attempt (name look-ups included) through Python's audit hooks and refuses each one.
OFFLINE_PROBE = r"""
import os, sys
attempts = []
def refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        attempts.append(event)
        raise OSError("no network in this test")
sys.addaudithook(refuse)
if sys.argv[1] == "set-in-process":  # the hub libraries are imported before offline mode is asked for
    import timm, huggingface_hub
    os.environ["LANGSEG_OFFLINE"] = "1"
import lang_seg
if sys.argv[2] == "timm-file":  # the cached file is the one timm loads
    import numpy as np, safetensors.numpy
    from lang_seg.weights import load_timm_pretrained
    vit = load_timm_pretrained("vit_base_patch32_384")
    saved = safetensors.numpy.load_file(sys.argv[3])
    assert np.array_equal(vit.pos_embed.detach().numpy(), saved["pos_embed"])
try:
    lang_seg.load_model(None, backbone="clip_vitb32_384", pretrained=True)
except lang_seg.LangSegError as exc:
    print("error:", exc)
print("connection attempts:", len(attempts))
"""
TIMM_REPO = "timm/vit_base_patch32_384.augreg_in21k_ft_in1k"


def _offline_probe(tmp_path, how, *args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LANGSEG_", "XDG_", "TORCH_HOME"))}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if how == "env":
        env["LANGSEG_OFFLINE"] = "1"
    run = subprocess.run([sys.executable, "-c", OFFLINE_PROBE, how, *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


@pytest.mark.parametrize("how", ["env", "set-in-process"])
def test_offline_mode_tries_no_connection_and_names_the_file(tmp_path, how):
    """``LANGSEG_OFFLINE=1`` with empty caches, set before the process starts or after the hub libraries were
    imported: no connection attempt, one line naming the file to place and where."""
    cache = tmp_path / "home/.cache/huggingface/hub/models--timm--vit_base_patch32_384.augreg_in21k_ft_in1k"
    assert _offline_probe(tmp_path, how, "-") == [
        f"error: offline: timm weights for vit_base_patch32_384 are not in the Hugging Face cache: place "
        f"model.safetensors of the Hugging Face repo {TIMM_REPO} under {cache} (copy that folder from a machine "
        f"where 'huggingface-cli download {TIMM_REPO} model.safetensors' ran), or build from a lang-seg checkpoint "
        f"(weights=...) or with pretrained=False",
        "connection attempts: 0"]


@pytest.mark.slow
def test_offline_mode_loads_timm_weights_from_the_cache(tmp_path):
    """A timm file in the Hugging Face cache (the layout ``huggingface-cli download`` leaves) loads offline
    without a connection attempt; the next missing file (CLIP's) is named the same way."""
    import safetensors.torch
    import timm

    repo = tmp_path / "home/.cache/huggingface/hub/models--timm--vit_base_patch32_384.augreg_in21k_ft_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text("r0")
    (repo / "snapshots/r0").mkdir(parents=True)
    state = timm.create_model("vit_base_patch32_384").state_dict()
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, repo / "snapshots/r0/model.safetensors")
    clip_file = tmp_path / "home/.cache/clip/ViT-B-32.pt"
    assert _offline_probe(tmp_path, "env", "timm-file", str(repo / "snapshots/r0/model.safetensors")) == [
        f"error: could not load CLIP ViT-B/32 (FileNotFoundError): with a network clip downloads it; offline, "
        f"place ViT-B-32.pt at {clip_file}, or build from a lang-seg checkpoint (weights=...) or with pretrained=False",
        "connection attempts: 0"]
