"""``python -m lang_seg.export`` and ``OnnxSegmenter`` (#23): both formats written from a tiny checkpoint, loaded
back by their runtimes and compared; the runtime-only segmenter against ``load_model(...).segment``; bad input."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lang_seg import LangSegError, NetOptions
from lang_seg.export import OnnxSegmenter, read_manifest
from lang_seg.export.layout import MANIFEST, TOLERANCE
from lang_seg.tools.parity import ARGMAX_MIN_AGREEMENT, stage_row

from .helpers import LABELS, images, nontrivial_state

ROOT = Path(__file__).resolve().parent.parent
EXPORT = [sys.executable, "-m", "lang_seg.export"]
SIZE = (128, 160)
FILES = ("image_encoder.onnx", "text_encoder.onnx", "image_encoder.mindir", "text_encoder.mindir")


def env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def write_checkpoint(path, backbone="tiny_vitb32", centred=False, **options):
    """Random weights; ``centred``: ``head1``'s bias cancels the decoder's mean feature on the photo, so that the
    pixel embeddings point in directions that differ across it (with random weights they all point one way,
    and every pixel takes the same label)."""
    import torch

    from lang_seg.backends.torch_backend import TorchModel
    from lang_seg.checkpoint import save_checkpoint
    from lang_seg.commands.demo import bundled_image, prepare

    torch.manual_seed(0)
    opts = NetOptions(backbone=backbone, **options)
    state = nontrivial_state(TorchModel(opts).state_dict(), 0)
    if centred:
        with torch.no_grad():
            x = torch.from_numpy(prepare(bundled_image(), 32, 480))
            mean = TorchModel(opts, state=state).net.encode_image(x)["path_1"].mean(dim=(0, 2, 3)).numpy()
        state["scratch.head1.bias"] = -(state["scratch.head1.weight"][:, :, 0, 0] @ mean)
    save_checkpoint(path, state, opts)
    return path


def run_export(cwd, *args, timeout=900):
    return subprocess.run(EXPORT + list(args), cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Both formats of a tiny checkpoint, written by the command started from another folder."""
    where = tmp_path_factory.mktemp("export")
    write_checkpoint(where / "tiny.ckpt", features=64, centred=True)
    r = run_export(where, "--weights", "tiny.ckpt", "--out", "out", "--size", *map(str, SIZE))
    assert r.returncode == 0, r.stderr[-3000:]
    return where, r.stdout


def test_both_formats_are_written_checked_and_described(exported):
    where, stdout = exported
    out = where / "out"
    manifest = read_manifest(out)
    assert sorted(manifest["files"]) == sorted(FILES)
    assert manifest["checkpoint"]["sha256"] == hashlib.sha256((where / "tiny.ckpt").read_bytes()).hexdigest()
    assert manifest["backbone"] == "tiny_vitb32" and manifest["patch_size"] == 32 and manifest["size"] == list(SIZE)
    assert manifest["normalization"]["mean"] == [0.5] * 3 and manifest["tokenizer"]["context_length"] == 77
    for name, entry in manifest["files"].items():
        assert 0 <= entry["max_abs_deviation"] <= TOLERANCE, name
        assert f"{name}: " in stdout
    onnx_image, mindir_image = manifest["files"]["image_encoder.onnx"], manifest["files"]["image_encoder.mindir"]
    assert onnx_image["inputs"]["images"]["shape"] == ["N", 3, "H", "W"] and set(onnx_image["dynamic"]) == {"N", "H", "W"}
    assert [s[0] for s in onnx_image["checked_on"]] == [2, 1] and onnx_image["checked_on"][1][2:] == [160, 224]
    assert mindir_image["fixed"] == {"N": 1, "H": 128, "W": 160, "why": mindir_image["fixed"]["why"]}
    assert "fixed input (1, 3, 128, 160)" in stdout
    assert manifest["files"]["text_encoder.mindir"]["dynamic"] == {"L": "any"}
    for name, meta in manifest["contents"].items():  # every file, with its size and hash
        data = (out / name).read_bytes()
        assert len(data) == meta["bytes"] and hashlib.sha256(data).hexdigest() == meta["sha256"], name
    assert set(manifest["contents"]) == set(FILES) | {"bpe_simple_vocab_16e6.txt.gz"}
    assert not [p for p in where.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_files_load_in_their_runtimes_and_match_the_backends(exported):
    """Beyond the export's own check: another batch and size through the ONNX file's dynamic dimensions,
    and the MindIR files (checked against MindSpore on export) against the torch reference."""
    import lang_seg
    from lang_seg.export import mindir_files, onnx_files
    from lang_seg.labels import token_ids

    out = exported[0] / "out"
    torch_model = lang_seg.load_model(str(exported[0] / "tiny.ckpt"), backend="torch")
    x = images((3, 3, 64, 96))
    np.testing.assert_allclose(onnx_files.run(out / "image_encoder.onnx", "images", x),
                               torch_model.pixel_embeddings(x), atol=TOLERANCE)
    tokens = token_ids(LABELS)
    text = torch_model.text_embeddings(LABELS)
    np.testing.assert_allclose(onnx_files.run(out / "text_encoder.onnx", "tokens", tokens), text, atol=TOLERANCE)
    x = images((1, 3) + SIZE)
    np.testing.assert_allclose(mindir_files.run(out / "image_encoder.mindir", "images", x),
                               torch_model.pixel_embeddings(x), atol=TOLERANCE)
    np.testing.assert_allclose(mindir_files.run(out / "text_encoder.mindir", "tokens", tokens), text, atol=TOLERANCE)


def test_runtime_segmenter_needs_neither_framework_and_segments_as_load_model(exported, tmp_path):
    import lang_seg
    from lang_seg.commands.demo import bundled_image
    from lang_seg.images import save_rgb_png

    out = exported[0] / "out"
    save_rgb_png(bundled_image(), tmp_path / "photo.png")
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from lang_seg.export import OnnxSegmenter\n"
        "seg = OnnxSegmenter(sys.argv[1])\n"
        "np.save('map.npy', seg.segment('photo.png', 'person,dog,sofa,wall,other'))\n"
        "np.save('logits.npy', seg.logits(np.load('x.npy'), ['plant', 'grass', 'cat', 'stone', 'other']))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mindspore'))))\n"
    )
    x = images((2, 3, 96, 128))
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tmp_path, env=env(), capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[-1]) == []
    model = lang_seg.load_model(str(exported[0] / "tiny.ckpt"), backend="torch")
    assert stage_row("", model.logits(x, LABELS), np.load(tmp_path / "logits.npy")).ok
    ours, theirs = np.load(tmp_path / "map.npy"), model.segment(tmp_path / "photo.png", "person,dog,sofa,wall,other")
    assert ours.shape == theirs.shape == bundled_image().shape[:2]
    assert np.bincount(theirs.ravel()).max() < 0.9 * theirs.size  # borders between labels, not one label everywhere
    assert (ours == theirs).mean() >= ARGMAX_MIN_AGREEMENT


def test_runtime_segmenter_refuses_what_it_cannot_run(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported[0] / "out", copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["options"]["arch_option"] = 1
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(LangSegError, match="arch_option 1 .*OnnxSegmenter runs arch_option 0"):
        OnnxSegmenter(copy)
    with pytest.raises(LangSegError, match="is not an LSeg export folder .no manifest.json."):
        OnnxSegmenter(tmp_path)
    (copy / MANIFEST).write_text("{")
    with pytest.raises(LangSegError, match="is not valid JSON"):
        OnnxSegmenter(copy)
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from lang_seg.errors import LangSegError\nfrom lang_seg.export import OnnxSegmenter\n"
            "try:\n    OnnxSegmenter(sys.argv[1])\nexcept LangSegError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(exported[0] / "out")], env=env(), capture_output=True, text=True)
    assert r.stdout.strip() == ('onnxruntime is not installed: pip install -e ".[export]" (from a checkout) or '
                                'pip install "lang-seg-ms[export]"'), r.stderr[-2000:]


def one_line_error(r, expected: str):
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and expected in lines[0], r.stderr[-3000:]


def test_bad_input_is_one_line_and_writes_nothing(exported, tmp_path):
    import torch

    where = exported[0]
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, tmp_path / "other.ckpt")
    (tmp_path / "file").write_text("x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    ckpt = str(where / "tiny.ckpt")
    cases = [
        (["--weights", "other.ckpt", "--out", "a"], "has no 'net.*' weights: it is not a lang-seg LSeg checkpoint"),
        (["--weights", ckpt, "--out", "file/a"], "cannot write file/a (File exists): a file stands where a folder of the path should be"),
        (["--weights", ckpt, "--out", "file"], "--out file is a file"),
        (["--weights", ckpt, "--out", "notes"], "--out notes exists and is not an LSeg export folder"),
        (["--weights", ckpt, "--out", "a", "--size", "100", "128"],
         "--size: image size 100x128 is not a multiple of the patch size 32: resize or pad it to e.g. 96x128"),
        (["--weights", "missing.ckpt", "--out", "a"], "checkpoint missing.ckpt does not exist"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, expected in cases:
        one_line_error(run_export(tmp_path, *args), expected)
    code = ("import sys; sys.modules['onnxruntime'] = None\nfrom lang_seg.export.command import main\n"
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "--weights", ckpt, "--out", "a"], cwd=tmp_path, env=env(),
                       capture_output=True, text=True)
    one_line_error(r, "--format onnx needs onnxruntime, which is not installed: pip install -e \".[export]\"")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_a_failed_check_keeps_the_earlier_export_and_leaves_nothing(exported, tmp_path, monkeypatch):
    from lang_seg.export import command

    out = tmp_path / "out"
    shutil.copytree(exported[0] / "out", out)
    before = (out / MANIFEST).read_bytes()
    monkeypatch.setattr(command, "TOLERANCE", -1.0)  # every deviation is now too large
    with pytest.raises(LangSegError, match=r"image_encoder.onnx deviates from the torch backend by .* nothing was written"):
        command.export(exported[0] / "tiny.ckpt", out, SIZE, ("onnx",))
    assert (out / MANIFEST).read_bytes() == before and sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (exported[0] / "out").iterdir())
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.slow
def test_real_size_export_of_clip_vitb32(tmp_path):
    """``clip_vitb32_384`` (random weights) at upstream's 480 window, both formats, through the command."""
    write_checkpoint(tmp_path / "b32.ckpt", backbone="clip_vitb32_384")
    r = run_export(tmp_path, "--weights", "b32.ckpt", "--out", "b32", timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = read_manifest(tmp_path / "b32")
    assert manifest["size"] == [480, 480] and manifest["embedding_dim"] == 512
    assert manifest["files"]["image_encoder.onnx"]["checked_on"] == [[2, 3, 480, 480], [1, 3, 512, 544]]
    assert all(entry["max_abs_deviation"] <= TOLERANCE for entry in manifest["files"].values())
    x = images((1, 3, 480, 480))
    seg = OnnxSegmenter(tmp_path / "b32")
    assert seg.pixel_embeddings(x).shape == (1, 512, 240, 240)
