"""The MindSpore port matches the torch reference: forward per stage, gradients, BN statistics, conversion."""
import subprocess
import sys

import numpy as np
import pytest

import lang_seg
from lang_seg import LangSegError, NetOptions
from lang_seg.backends.mindspore_backend import MindSporeModel, parse_device, use_device
from lang_seg.backends.torch_backend import TorchModel
from lang_seg.checkpoint import save_checkpoint
from lang_seg.safe_load import load_torch_file
from lang_seg.names import TORCH_ONLY_PREFIX
from lang_seg.tools.parity import backward_rows, format_table, forward_rows

from .helpers import LABELS, TINY_SIZES, images, nontrivial_state

CASES = [
    ("tiny_vitb32", dict(readout="project")),
    ("tiny_vitb32", dict(readout="ignore", use_bn=False, arch_option=1, block_depth=2, activation="relu")),
    ("tiny_vitl16", dict(readout="add", arch_option=2, block_depth=3, activation="tanh")),
    ("tiny_vitl16", dict(readout="project", arch_option=1, block_depth=1, activation="lrelu")),
]


def pair(backbone, seed=0, **options):
    """Torch and MindSpore models holding the same non-trivial random weights."""
    import torch

    torch.manual_seed(seed)
    opts = NetOptions(backbone=backbone, **options)
    state = nontrivial_state(TorchModel(opts).state_dict(), seed)
    return TorchModel(opts, state=state), MindSporeModel(opts, state=state), state


def assert_rows(rows):
    failed = [r for r in rows if not r.ok]
    assert not failed, "\n" + format_table(failed)


@pytest.mark.parametrize("backbone, options", [*CASES[::2], *(pytest.param(*c, marks=pytest.mark.slow) for c in CASES[1::2])])
def test_forward_stages_match(backbone, options):
    torch_model, ms_model, _ = pair(backbone, **options)
    h, w = TINY_SIZES[backbone]
    rows = forward_rows(torch_model, ms_model, images((2, 3, h, w)), LABELS)
    assert len(rows) == 13  # text features, 11 stages, argmax
    assert_rows(rows)


@pytest.mark.parametrize("backbone, options", [CASES[0], *(pytest.param(*c, marks=pytest.mark.slow) for c in CASES[1:3])])
def test_gradients_and_batchnorm_statistics_match(backbone, options):
    torch_model, ms_model, _ = pair(backbone, **options)
    h, w = TINY_SIZES[backbone]
    target = np.random.RandomState(3).randint(-1, len(LABELS), (2, h, w))
    rows = backward_rows(torch_model, ms_model, images((2, 3, h, w)), target, LABELS)
    n_params = sum(1 for r in rows if r.name.startswith("grad "))
    # every trainable tensor the loss reaches: ViT (hooked blocks), reassemble, scratch
    assert n_params > 60
    if options.get("use_bn", True):
        assert sum(1 for r in rows if r.name.startswith("bn ")) == 4 * 2 * 2 * 2  # blocks x units x BNs x stats
    assert_rows(rows)


def test_upstream_checkpoint_runs_on_mindspore(upstream_fixture):
    path, meta, data = upstream_fixture("tiny_vitl16")
    o = meta["options"]
    with pytest.warns(UserWarning, match="not used by LSeg"):
        model = lang_seg.load_model(
            str(path), backend="mindspore", readout=o["readout"], arch_option=o["arch_option"],
            block_depth=o["block_depth"], activation=o["activation"],
        )
    out = model.logits(data["images"], list(data["labels"]))
    ref = data["logits"]
    assert np.abs(out - ref).max() <= 1e-4 * ref.std()
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.999


def test_round_trip_is_bit_exact_and_files_convert_both_ways(tmp_path, upstream_fixture):
    path, meta, _ = upstream_fixture("tiny_vitb32")
    import torch

    # the original file as torch reads it, not a copy through this project's reader
    original = load_torch_file(path)["state_dict"]
    assert sum(v.dtype == torch.float16 for v in original.values()) == 27  # upstream's CLIP tower, as on CUDA
    ms_file, torch_file = tmp_path / "model_ms.ckpt", tmp_path / "back.ckpt"
    cmd = [sys.executable, "-m", "lang_seg.commands.convert"]
    r1 = subprocess.run(cmd + [str(path), str(ms_file)], capture_output=True, text=True)
    assert r1.returncode == 0, r1.stderr
    assert "torch -> mindspore" in r1.stdout
    import mindspore as ms

    raw = ms.load_checkpoint(str(ms_file))
    assert "pretrained.model.blocks.0.norm1.gamma" in raw
    assert "scratch.refinenet1.resConfUnit1.bn1.moving_variance" in raw
    assert "clip_pretrained.token_embedding.embedding_table" in raw
    assert TORCH_ONLY_PREFIX + "clip_pretrained.visual.conv1.weight" in raw
    r2 = subprocess.run(cmd + [str(ms_file), str(torch_file)], capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr
    assert "mindspore -> torch" in r2.stdout
    back = load_torch_file(torch_file)
    assert set(back["state_dict"]) == set(original)
    for key, value in original.items():
        again = back["state_dict"][key]
        assert again.dtype == value.dtype, key
        assert again.numpy().tobytes() == value.numpy().tobytes(), key
    assert back["hyper_parameters"]["backbone"] == "tiny_vitb32"
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left


def test_load_model_from_mindspore_checkpoint_gives_same_logits(tmp_path):
    torch_model, ms_model, state = pair("tiny_vitl16", arch_option=2, block_depth=2, activation="tanh")
    save_checkpoint(tmp_path / "t.ckpt", state, torch_model.options)
    from lang_seg.commands.convert import convert_file

    convert_file(tmp_path / "t.ckpt", tmp_path / "m.ckpt")
    x = images((1, 3, 64, 64))
    a = lang_seg.load_model(str(tmp_path / "m.ckpt"), backend="mindspore").logits(x, LABELS)
    b = lang_seg.load_model(str(tmp_path / "t.ckpt"), backend="torch").logits(x, LABELS)
    assert np.abs(a - b).max() <= 1e-4 * b.std()


def test_eager_mode_matches_graph_mode():
    _, graph_model, state = pair("tiny_vitl16")
    eager = MindSporeModel(graph_model.options, state=state, mode="eager")
    assert lang_seg.load_model(None, backbone="tiny_vitl16", backend="mindspore", ms_mode="eager").mode == "eager"
    with pytest.raises(LangSegError, match="unknown MindSpore mode"):
        lang_seg.load_model(None, backbone="tiny_vitl16", backend="mindspore", ms_mode="fast")
    x = images((1, 3, 64, 64))
    np.testing.assert_allclose(eager.logits(x, LABELS), graph_model.logits(x, LABELS), atol=1e-5)


def test_checkpoint_of_another_backbone_names_keys(upstream_fixture):
    path, _, _ = upstream_fixture("tiny_vitb32")
    for backend in ("torch", "mindspore"):
        with pytest.raises(LangSegError, match=r"does not fit the network: .*missing \(first: .*unexpected \(first: "):
            lang_seg.load_model(str(path), backend=backend, backbone="tiny_vitl16")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.logits(images((1, 3, 64, 70)), LABELS), "not a multiple of the patch size"),
        (lambda m: m.logits(images((1, 1, 64, 64)), LABELS), "3 colour channels"),
        (lambda m: m.logits(images((1, 3, 64, 64)).astype(np.float16), LABELS), "float32"),
        (lambda m: m.logits(images((1, 3, 64, 64)), ["cat", ""]), "empty label"),
    ],
)
def test_mindspore_bad_input_errors(call, message):
    model = lang_seg.load_model(None, backbone="tiny_vitl16", backend="mindspore")
    with pytest.raises(LangSegError, match=message):
        call(model)


def test_devices():
    assert parse_device("cpu") == ("CPU", 0)
    assert parse_device("gpu:1") == ("GPU", 1)
    assert parse_device("cuda") == ("GPU", 0)
    with pytest.raises(LangSegError, match="unknown device"):
        parse_device("tpu")
    use_device("cpu")
    with pytest.raises(LangSegError, match="cannot switch"):
        use_device("gpu:0")


def test_gpu_request_without_plugin_gives_one_line_error():
    """No GPU here: in a fresh process the error says what MindSpore needs."""
    code = (
        "import lang_seg\n"
        "try:\n"
        "    lang_seg.load_model(None, backbone='tiny_vitl16', backend='mindspore', device='gpu:0')\n"
        "except lang_seg.LangSegError as e:\n"
        "    print('ERR', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    line = [l for l in result.stdout.splitlines() if l.startswith("ERR")]
    assert line and "GPU plugin did not load" in line[0] and "CUDA 11" in line[0]


def test_bare_mindspore_net_initialises_like_the_torch_reference():
    """The MindSpore LSegNet starts from the torch reference's distributions on its own (no torch needed):
    constant tensors equal, random ones with the same mean and spread (statistics, not values).

    The reference moments come from 20 torch draws, so only our one draw is noisy. Bounds are 6 standard
    errors: a tensor of 100 or more values is judged alone; the smaller ones (biases of 8 to 64 values,
    whose sample spread says little) are judged together by their pooled second moment."""
    import torch
    from lang_seg.modules.models.lseg_net import LSegNet as TorchNet
    from lang_seg.modules.models_ms.lseg_net import LSegNet as MsNet

    from lang_seg.backends.mindspore_backend import named_parameters
    from lang_seg.names import ms_to_torch_name

    options = NetOptions(backbone="tiny_vitb32", features=32)
    draws = []
    for seed in range(20):
        torch.manual_seed(seed)
        draws.append({k: v.detach().numpy() for k, v in TorchNet(options).state_dict().items()})
    checked, pooled_ours, pooled_n = 0, 0.0, 0
    for name, param in named_parameters(MsNet(options)):
        ours = param.asnumpy().astype(np.float64)
        theirs = np.stack([d[ms_to_torch_name(name)] for d in draws]).astype(np.float64)
        assert ours.shape == theirs.shape[1:], name
        if theirs.min() == theirs.max():
            np.testing.assert_array_equal(ours, theirs[0], err_msg=name)
            continue
        assert ours.min() != ours.max(), f"{name} is constant, the reference is random"
        n, mean, std = ours.size, theirs.mean(), theirs.std()
        if n >= 100:
            assert abs(ours.std() / std - 1) < 6 / np.sqrt(n), (name, ours.std(), std)
            assert abs(ours.mean() - mean) < 6 * std / np.sqrt(n), (name, ours.mean(), mean)
        else:
            pooled_ours += float((ours ** 2).sum() / (theirs ** 2).mean())
            pooled_n += n
        checked += 1
    assert checked > 50 and pooled_n > 0
    assert abs(pooled_ours / pooled_n - 1) < 6 * np.sqrt(2 / pooled_n), (pooled_ours / pooled_n, pooled_n)


def fp16_logits(image_features: np.ndarray, text_features: np.ndarray, cast_first: bool = True) -> np.ndarray:
    """Upstream's ``half_logits`` in numpy: features normalised in fp32, cast to fp16, scaled in fp16 by the
    fp16-rounded scale (``cast_first=False``: scaled in fp32, then cast), products summed in fp32, rounded to fp16."""
    from lang_seg.config import LOGIT_SCALE

    n, c, h, w = image_features.shape
    image = image_features.transpose(0, 2, 3, 1).reshape(-1, c)
    image = image / np.linalg.norm(image, axis=-1, keepdims=True)
    text = text_features / np.linalg.norm(text_features, axis=-1, keepdims=True)
    if cast_first:
        scaled = np.float16(LOGIT_SCALE) * image.astype(np.float16)  # fp16 x fp16, rounded once
    else:
        scaled = (np.float32(LOGIT_SCALE) * image).astype(np.float16)
    logits = (scaled.astype(np.float32) @ text.astype(np.float16).astype(np.float32).T).astype(np.float16)
    return logits.astype(np.float32).reshape(n, h, w, -1).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_half_logits_cast_then_scale_as_upstream(backend):
    import torch

    model = lang_seg.load_model(None, backbone="tiny_vitl16", backend=backend, half_logits=True, seed=0)
    x = images((2, 3, 64, 64))
    if backend == "torch":
        text = model.text_features(LABELS)
        with torch.no_grad():
            stages = {k: v.numpy() for k, v in model.net.forward_stages(torch.from_numpy(x), text).items()}
        text = text.numpy()
    else:
        stages, text = model.forward_stages(x, LABELS), model.text_features(LABELS).asnumpy()
    expected = fp16_logits(stages["image_features"], text)
    got = stages["logits"]
    assert got.dtype == np.float32 and got.shape == expected.shape == (2, len(LABELS), 32, 32)
    # fp16 values: equal but for the rare last-bit flip of a different summation order (measured 0.04 %)
    assert np.mean(got == expected) >= 0.995, np.mean(got == expected)
    assert np.abs(got - expected).max() <= 2 ** -7  # one fp16 step at |logit| < 16
    # the other order (scale in fp32, then cast) is visibly different at this size
    assert np.mean(fp16_logits(stages["image_features"], text, cast_first=False) == expected) < 0.9
