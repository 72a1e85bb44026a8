"""Checkpoints load without running code from them; malformed ones stop with one line; options the
weights cannot tell apart are asked for, not guessed."""
import numpy as np
import pytest
import torch

import lang_seg
from lang_seg import LangSegError
from lang_seg.checkpoint import infer_options, read_checkpoint
from lang_seg.safe_load import SAFE_GLOBALS, file_kind, load_torch_file

from lang_seg.data.bundled import ROOT as BUNDLED

from .helpers import LABELS, images


class _MakesAFile:
    """Unpickling this calls ``open(path, 'w')``: what a malicious checkpoint could do instead."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _upstream_payload(upstream_fixture, config="tiny_vitb32"):
    path, _, _ = upstream_fixture(config)
    return load_torch_file(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, upstream_fixture, capsys, legacy):
    marker = tmp_path / "created_by_unpickling"
    payload = _upstream_payload(upstream_fixture)
    payload["extra"] = _MakesAFile(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    assert file_kind(path) == ("torch-legacy" if legacy else "torch")
    message = f"checkpoint {path} holds io.open, which is not a tensor, number or string and would run code " \
              "when loaded: refused; if you trust its source, pass --trust-checkpoint (Python: trust=True)"
    with pytest.raises(LangSegError) as caught:
        lang_seg.load_model(str(path))
    assert str(caught.value) == message
    from lang_seg.commands.convert import main as convert_main

    import test_lseg

    assert convert_main([str(path), str(tmp_path / "out.ckpt")]) == 2
    assert test_lseg.main(["--weights", str(path), "--test-val", "--data-path", str(BUNDLED), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {message}"] * 2
    assert not marker.exists() and not (tmp_path / "out.ckpt").exists() and not (tmp_path / "o").exists()
    # the explicit opt-in unpickles it (and so runs it)
    assert read_checkpoint(path, trust=True).extra["extra"].name == str(marker)
    assert marker.exists()


def test_upstream_and_project_checkpoints_load_weights_only(tmp_path, upstream_fixture):
    """Upstream's Lightning 1.4.9 keys callback states by the callback class: the one class allowed.
    This project's checkpoints (Lightning 2.x, ``save_checkpoint``) hold no class at all."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    path, _, _ = upstream_fixture("tiny_vitb32")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == list(SAFE_GLOBALS)
    ckpt = read_checkpoint(path)
    assert list(ckpt.extra["callbacks"]) == [ModelCheckpoint]
    assert ModelCheckpoint not in torch.serialization.get_safe_globals()  # allowed for that load only
    from lang_seg.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ours.ckpt", ckpt.state, infer_options(ckpt.state))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(tmp_path / "ours.ckpt")) == []
    x = images((1, 3, 64, 96))
    np.testing.assert_array_equal(lang_seg.load_model(str(tmp_path / "ours.ckpt")).logits(x, LABELS),
                                  lang_seg.load_model(str(path)).logits(x, LABELS))


def test_tensors_keep_their_dtype(upstream_fixture):
    path, _, _ = upstream_fixture("tiny_vitb32")
    raw = _upstream_payload(upstream_fixture)["state_dict"]
    state = read_checkpoint(path).state
    halves = [k for k, v in raw.items() if v.dtype == torch.float16]
    assert len(halves) == 27  # CLIP's linear and attention weights, fp16 as clip.load leaves them on CUDA
    for key, value in raw.items():
        assert state[key[len("net."):]].dtype == value.numpy().dtype, key
        assert state[key[len("net."):]].tobytes() == value.numpy().tobytes(), key


def test_legacy_torch_format_loads(tmp_path, upstream_fixture):
    path = tmp_path / "legacy.ckpt"
    torch.save(_upstream_payload(upstream_fixture), path, _use_new_zipfile_serialization=False)
    assert file_kind(path) == "torch-legacy"
    model = lang_seg.load_model(str(path))
    reference = lang_seg.load_model(str(upstream_fixture("tiny_vitb32")[0]))
    x = images((1, 3, 64, 64))
    np.testing.assert_array_equal(model.logits(x, LABELS), reference.logits(x, LABELS))


def _write(path, payload):
    torch.save(payload, path)
    return str(path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, up: p.write_bytes(up.read_bytes()[:200_000]) and str(p),
         r"is damaged or truncated: torch cannot read it \(RuntimeError: PytorchStreamReader failed reading zip "
         r"archive: failed finding central directory\); copy or download it again$"),
        (lambda p, up: p.write_bytes(up.read_bytes()[:100]) and str(p), "is damaged or truncated"),
        (lambda p, up: _write(p, {"state_dict": {k: v for k, v in load_torch_file(up)["state_dict"]
                                                 .items() if ".blocks." not in k}}),
         r"lacks the ViT's blocks \(pretrained.model.blocks.\*\): it is not an LSeg network checkpoint"),
        (lambda p, up: _write(p, {"state_dict": {"net.x": 3}}), r"net.x is a int, not a tensor$"),
        (lambda p, up: _write(p, [1, 2]), "holds a list, not a lang-seg state_dict"),
        (lambda p, up: p.write_text("not a checkpoint") and str(p),
         "is neither a torch file nor a readable MindSpore checkpoint"),
    ],
    ids=["truncated", "truncated-header", "no-blocks", "not-a-tensor", "a-list", "text"],
)
def test_malformed_checkpoints_give_one_line(tmp_path, upstream_fixture, make, message):
    up, _, _ = upstream_fixture("tiny_vitb32")
    path = make(tmp_path / "bad.ckpt", up)
    with pytest.raises(LangSegError, match=message) as caught:
        lang_seg.load_model(path)
    assert "\n" not in str(caught.value)


def test_readout_comes_from_keys_or_is_asked_for(upstream_fixture):
    state = read_checkpoint(upstream_fixture("tiny_vitb32")[0]).state
    assert infer_options(state).readout == "project"  # its projection's weights are there
    plain = {k: v for k, v in state.items() if ".project." not in k}
    with pytest.raises(LangSegError, match="pass readout='ignore' or 'add'"):
        infer_options(plain)
    assert infer_options(plain, {"readout": "add"}).readout == "add"
    assert infer_options(plain, readout="ignore").readout == "ignore"


def test_trusting_one_checkpoint_trusts_no_other(tmp_path, monkeypatch):
    """``--trust-checkpoint`` on a resume (either form of train_lseg.py) loads that one file; a weights-only
    ``torch.load`` of another file naming the same function afterwards, in the same process, still refuses it."""
    import pickle

    import train_lseg

    from .test_bad_input import CLI, TRAIN

    monkeypatch.chdir(tmp_path)
    allowed_before = set(torch.serialization.get_safe_globals())  # torch keeps a set: its list order varies
    assert train_lseg.main(["--exp_name", "a", *TRAIN, "--max_steps", "1"]) == 0  # a resumable last.ckpt
    payload = torch.load("checkpoints/a/version_0/checkpoints/last.ckpt", weights_only=True)
    payload["extra"] = _MakesAFile(tmp_path / "trusted_ran")
    torch.save(payload, "trusted.ckpt")
    torch.save({"state_dict": {}, "x": _MakesAFile(tmp_path / "other_ran")}, "other.ckpt")
    resumes = [["--exp_name", "b", "--resume", "trusted.ckpt", "--trust-checkpoint", *TRAIN, "--max_steps", "2"],
               ["fit", *CLI, "--ckpt_path", "trusted.ckpt", "--trust-checkpoint", "--trainer.max_steps", "2"]]
    for argv in resumes:
        assert train_lseg.main(argv) == 0, argv
        assert (tmp_path / "trusted_ran").exists()  # trusted: it ran, as the user asked
        (tmp_path / "trusted_ran").unlink()
        with pytest.raises(pickle.UnpicklingError, match="io.open"):
            torch.load("other.ckpt", weights_only=True)
        assert not (tmp_path / "other_ran").exists()
        assert set(torch.serialization.get_safe_globals()) == allowed_before
