"""The browser demo's logic without a browser: labels and uploads checked, segmentation on either or
both backends, what the page shows (shares, legend, PNG), the default weights and the command line."""
import io
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from lang_seg.commands import app, app_logic, app_view
from lang_seg.configs import CONFIG_DIR
from lang_seg.errors import LangSegError
from lang_seg.images import palette

from .app_helpers import SCENE, SCENE_LABELS, png_bytes, png_claiming, tiny_checkpoint

SMALL = {"base_size": 160, "crop_size": 160}  # the evaluator's windows, smaller than the page's 520/480: faster


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(tiny_checkpoint(tmp_path_factory.mktemp("app") / "tiny.ckpt"))


@pytest.fixture(scope="module")
def scene():
    return app_logic.read_picture(SCENE.read_bytes())


# ---- labels ----

def test_labels_as_typed_and_presets():
    assert app_logic.parse_label_text(" dog, grass ,other ") == ["dog", "grass", "other"]
    assert app_logic.parse_label_text(",".join(f"thing {i}" for i in range(500)))[-1] == "thing 499"
    presets = app_logic.presets()
    assert [app_logic.parse_label_text(text) for name, text in presets.items() if "ADE20K" not in name] == [
        ["plant", "grass", "cat", "stone", "other"], ["sea", "beach", "other"], ["building", "plant", "sky", "other"]]
    ade = app_logic.parse_label_text(presets["ADE20K: 150 classes"])  # names 'screen' twice, as the dataset does
    assert len(ade) == 150 and ade[:3] == ["wall", "building", "sky"] and ade.count("screen") == 2


@pytest.mark.parametrize("text, message", [
    ("", "no labels"),
    (" , ,", "no labels"),
    ("dog,,cat", "empty label"),
    ("dog, cat, dog", "'dog' appears twice"),
    (",".join(f"thing {i}" for i in range(501)), "501 labels given: at most 500"),
    ("dog, " + "very " * 80 + "long", "longer than CLIP's 77-token context"),
])
def test_labels_refused_with_a_message(text, message):
    with pytest.raises(LangSegError, match=message):
        app_logic.parse_label_text(text)


def test_a_label_of_exactly_the_context_is_accepted():
    assert app_logic.parse_label_text("word " * 75) == ["word " * 74 + "word"]  # 75 tokens + start + end = 77


# ---- pictures ----

def test_pictures_of_every_kind_become_rgb():
    grey = np.full((20, 30), 100, np.uint8)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15] = (255, 0, 0, 255)  # opaque red left, transparent right (composited onto white)
    deep = np.full((20, 30), 65535, np.uint16)
    jpeg = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(jpeg, format="JPEG")
    out = {kind: app_logic.read_picture(data) for kind, data in [
        ("grey", png_bytes(grey)), ("rgba", png_bytes(rgba)), ("16-bit", png_bytes(deep)), ("jpeg", jpeg.getvalue())]}
    assert all(a.shape == (20, 30, 3) and a.dtype == np.uint8 for a in out.values())
    assert (out["grey"] == 100).all() and (out["16-bit"] == 255).all()
    assert (out["rgba"][:, :15] == (255, 0, 0)).all() and (out["rgba"][:, 15:] == 255).all()
    assert np.abs(out["jpeg"].astype(int) - 200).max() <= 2
    assert app_logic.read_picture(SCENE.read_bytes()).shape == (240, 320, 3)


@pytest.mark.parametrize("data, kwargs, message", [
    (b"", {}, "empty"),
    (b"%PDF-1.4 not a picture at all", {}, "not a picture"),
    (SCENE.read_bytes()[:len(SCENE.read_bytes()) // 2], {}, "damaged or truncated"),
    (png_bytes(np.zeros((1, 1, 3), np.uint8)), {}, "1x1 pixels: too small"),
    (png_claiming(5000, 3000), {}, "5000x3000 pixels, over the limit of 4096 px on the long side"),
    (png_claiming(100000, 100000), {}, "is far over the limit of 4096 px"),
    (SCENE.read_bytes(), {"max_side": 256}, "320x240 pixels, over the limit of 256 px"),
])
def test_bad_uploads_refused_with_a_message(data, kwargs, message):
    with pytest.raises(LangSegError, match=message):
        app_logic.read_picture(data, name="upload.bin", **kwargs)


def test_bundled_examples_are_readable():
    examples = app_logic.example_pictures()
    assert list(examples)[:2] == ["PASCAL VOC photo 000", "ARC2017 photo 000"] and len(examples) == 8
    assert app_logic.read_picture(examples["PASCAL VOC photo 000"].read_bytes()).shape == (375, 500, 3)


# ---- what the page shows ----

def test_shares_legend_and_colours():
    label_map = np.array([[0, 0, 2, 2], [2, 2, 2, 2]])
    labels = ["a<b>", "grass", "cat"]
    assert app_view.label_shares(label_map, labels) == [(0, "a<b>", 0.25), (1, "grass", 0.0), (2, "cat", 0.75)]
    legend = app_view.legend_html(label_map, labels)
    assert legend.index(">cat<") < legend.index(">a&lt;b&gt;<")  # largest first, user text escaped
    assert "75.0 %" in legend and "25.0 %" in legend and "not found (0 %): grass" in legend
    assert [app_view.percent(s) for s in (0.0004, 0.0005, 1.0)] == ["<0.1 %", "0.1 %", "100.0 %"]
    assert "rgb(0, 128, 0)" in legend  # id 2's palette colour
    assert (app_view.colour_mask(label_map, 3) == palette()[label_map]).all()
    extended = app_view.colours(500)
    assert (extended[:256] == palette()).all() and len({tuple(c) for c in extended}) == 500


@pytest.mark.parametrize("n_labels, mode", [(5, "P"), (300, "I;16")])
def test_label_map_png_holds_the_ids(n_labels, mode):
    label_map = np.random.RandomState(0).randint(0, n_labels, (24, 40))
    im = Image.open(io.BytesIO(app_view.label_map_png(label_map, n_labels)))
    assert im.mode == mode and im.size == (40, 24)
    assert (np.asarray(im) == label_map).all()
    if mode == "P":
        assert im.getpalette()[:9] == palette()[:3].flatten().tolist()


# ---- segmentation ----

def test_segment_on_torch_loads_the_model_once(weights, scene, monkeypatch):
    import lang_seg

    loads = []
    real = lang_seg.load_model
    monkeypatch.setattr(lang_seg, "load_model", lambda *a, **k: loads.append(k["backend"]) or real(*a, **k))
    store = app_logic.ModelStore(weights)
    steps = []
    labels = ["sky", "grass", "other"]
    seg = app_logic.segment_picture(store, scene, labels, "torch", progress=lambda f, t: steps.append((f, t)))
    again = app_logic.segment_picture(store, scene, labels, "torch", **SMALL)
    assert loads == ["torch"] and store.loaded() == ["torch"]
    assert [f for f, _ in steps] == sorted(f for f, _ in steps) and steps[-1] == (1.0, "done")
    assert any("segmenting at one scale" in t for _, t in steps)
    (run,) = seg.runs
    assert run.backend == "torch" and run.label_map.shape == (240, 320) and run.label_map.dtype == np.int64
    assert 0 <= run.label_map.min() and run.label_map.max() < len(labels) and seg.agreement is None
    assert again.runs[0].label_map.shape == (240, 320)
    multi = app_logic.segment_picture(store, scene, labels, "torch", multi_scale=True, base_size=64, crop_size=64)
    assert multi.multi_scale and multi.runs[0].label_map.shape == (240, 320)


def test_segment_on_both_backends_reports_their_agreement(weights, scene):
    store = app_logic.ModelStore(weights)
    seg = app_logic.segment_picture(store, scene, SCENE_LABELS, "both", **SMALL)
    torch_map, ms_map = (run.label_map for run in seg.runs)
    assert [run.backend for run in seg.runs] == ["torch", "mindspore"]
    assert len(np.unique(torch_map)) >= 3  # a map with boundaries, where the backends could disagree
    assert seg.agreement == float(np.mean(torch_map == ms_map)) and seg.agreement >= 0.999


def test_concurrent_requests_get_their_own_results(weights, scene):
    store = app_logic.ModelStore(weights)
    label_sets = [["sky", "grass", "other"], ["sea", "beach", "tree", "other"]]
    alone = [app_logic.segment_picture(store, scene, labels, **SMALL).runs[0].label_map for labels in label_sets]
    together = [None, None]

    def request(i):
        together[i] = app_logic.segment_picture(store, scene, label_sets[i], **SMALL)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for i, labels in enumerate(label_sets):
        assert together[i].labels == labels and (together[i].runs[0].label_map == alone[i]).all()


def test_unknown_backend_refused():
    with pytest.raises(LangSegError, match="unknown backend 'jax'"):
        app_logic.backends_of("jax")


# ---- default weights and the command ----

def test_default_weights_newest_version_else_trained_first(tmp_path):
    run_dir = tmp_path / "checkpoints" / "bundled_tiny"
    calls = []

    def train(command, cwd):
        calls.append((command, cwd))
        (run_dir / "version_0" / "checkpoints").mkdir(parents=True)
        (run_dir / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"x")
        return 0

    assert app.default_weights(tmp_path, run=train) == run_dir / "version_0" / "checkpoints" / "last.ckpt"
    config = str(CONFIG_DIR / "bundled_tiny.yaml")  # shipped with the package: runs from any folder
    assert calls == [([sys.executable, "-m", "lang_seg.commands.train", "fit", "--config", config], tmp_path)]
    for n in (2, 10):
        (run_dir / f"version_{n}" / "checkpoints").mkdir(parents=True)
        (run_dir / f"version_{n}" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert app.default_weights(tmp_path, run=lambda *a, **k: pytest.fail("no training")).parts[-3] == "version_10"
    failing = tmp_path / "failing"
    failing.mkdir()
    with pytest.raises(LangSegError, match="training the bundled model failed \\(exit status 1\\)"):
        app.default_weights(failing, run=lambda *a, **k: 1)


def test_command_line_defaults_and_refusals(capsys, tmp_path):
    args = app.build_parser().parse_args([])
    assert (args.host, args.port, args.backend, args.max_side, args.weights) == ("127.0.0.1", 8501, "torch", 4096, None)
    command = app.streamlit_arguments(app.build_parser().parse_args(["--backend", "both", "--port", "9000"]),
                                      tmp_path / "w.ckpt")
    assert command[:2] == ["run", str(app.PAGE)] and app.PAGE.is_file()
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "9000"
    assert command[command.index("--") + 1:] == ["--weights", str(tmp_path / "w.ckpt"), "--backend", "both",
                                                 "--max-side", "4096"]
    assert app.main(["--weights", str(tmp_path / "missing.ckpt")]) == 2
    assert app.main(["--weights", str(tmp_path / "missing.ckpt"), "--max-side", "4"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: checkpoint {tmp_path / 'missing.ckpt'} does not exist: check the path",
                   "error: --max-side 4 is below the smallest picture side accepted (16)"]
