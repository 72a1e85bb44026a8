"""The MindSpore zero-shot networks match the torch reference and upstream: forward per stage, gradients,
BatchNorm statistics (the ResNet trunk's included), SGD steps, conversion; bounds of lang_seg/tools/parity.py."""
import subprocess
import sys

import numpy as np
import pytest

import lang_seg
from lang_seg import NetOptions
from lang_seg.backends.mindspore_backend import MindSporeModel
from lang_seg.backends.torch_backend import TorchModel
from lang_seg.safe_load import load_torch_file
from lang_seg.tools.parity import backward_rows, format_table, forward_rows, random_batches, training_rows

from .helpers import FIXTURES, images, nontrivial_state, seeded_state
from .test_zero_shot_nets import episode_logits, zs_data

PAIR = ["others", "dog"]
SIZE = (64, 96)


def pair(backbone="tiny_resnet", seed=0, **options):
    import torch

    torch.manual_seed(seed)
    opts = NetOptions(backbone=backbone, features=16, **options)
    state = nontrivial_state(TorchModel(opts).state_dict(), seed)
    return TorchModel(opts, state=state), MindSporeModel(opts, state=state)


def assert_rows(rows):
    failed = [r for r in rows if not r.ok]
    assert not failed, "\n" + format_table(failed)


def assert_close_to_upstream(out, ref):
    assert np.abs(out - ref).max() <= 1e-4 * ref.std()
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.999


@pytest.mark.parametrize("name, path", [("tiny_resnet", "upstream_zs_tiny_resnet.ckpt"),
                                        ("tiny_vitb32", "upstream_tiny_vitb32.ckpt")])
def test_upstream_zero_shot_checkpoints_run_on_mindspore(name, path):
    data = zs_data(name)
    with pytest.warns(UserWarning, match="not used by LSeg"):
        model = lang_seg.load_model(str(FIXTURES / path), backend="mindspore", zero_shot=True)
    assert type(model.net).__name__ == ("LSegRNNetZS" if name == "tiny_resnet" else "LSegNetZS")
    assert_close_to_upstream(episode_logits(model, data), data["logits"])


def test_resnet_forward_stages_and_gradients_match():
    torch_model, ms_model = pair()
    x = images((2, 3) + SIZE)
    rows = forward_rows(torch_model, ms_model, x, PAIR)
    assert len(rows) == 13
    assert_rows(rows)
    target = np.random.RandomState(3).randint(-1, len(PAIR), (2,) + SIZE)
    rows = backward_rows(torch_model, ms_model, x, target, PAIR)
    grads = [r for r in rows if r.name.startswith("grad ")]
    # stem (conv, BN scale and shift), 4 blocks of 3 convs + 3 BNs and a projected shortcut (conv + BN)
    assert sum(r.name.startswith("grad pretrained.layer") for r in rows) == 3 + 4 * (3 + 3 * 2 + 3)
    assert len(grads) > 80
    # the trunk's BatchNorm layers (stem, 3 per block, 4 shortcuts) and the decoder's, two statistics each
    assert sum(r.name.startswith("bn pretrained.") for r in rows) == 2 * (1 + 4 * 3 + 4)
    assert sum(r.name.startswith("bn scratch.") for r in rows) == 2 * 4 * 2 * 2
    assert_rows(rows)


@pytest.mark.slow
def test_resnet_training_steps_match():
    torch_model, ms_model = pair()
    batches = random_batches(3, 2, SIZE, len(PAIR), seed=5)
    rows = training_rows(torch_model, ms_model, batches, PAIR, lr=0.004 / 16 * 2)
    # per step: the loss, the ReLU sides; per group its update and MindSpore's rounding
    assert len(rows) == 3 * (2 + 2 * 2)
    assert_rows(rows)


@pytest.mark.slow
def test_real_size_resnet101_on_mindspore():
    from lang_seg.backends.mindspore_backend import ms_parameter_shapes
    from lang_seg.names import ms_to_torch_name

    data = zs_data("clip_resnet101")
    options = NetOptions("clip_resnet101")
    shapes = {ms_to_torch_name(name): shape for name, shape in ms_parameter_shapes(options)}
    model = MindSporeModel(options, state=seeded_state(shapes, seed=0))
    assert_close_to_upstream(episode_logits(model, data), data["logits"])


def test_resnet_checkpoint_converts_both_ways_bit_exact(tmp_path):
    src = FIXTURES / "upstream_zs_tiny_resnet.ckpt"
    ms_file, back = tmp_path / "rn_ms.ckpt", tmp_path / "rn.ckpt"
    cmd = [sys.executable, "-m", "lang_seg.commands.convert"]
    for a, b in ((src, ms_file), (ms_file, back)):
        result = subprocess.run(cmd + [str(a), str(b)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    import mindspore as ms

    raw = ms.load_checkpoint(str(ms_file))
    assert "pretrained.layer1.1.moving_variance" in raw and "pretrained.layer2.0.downsample.1.gamma" in raw
    original, again = load_torch_file(src)["state_dict"], load_torch_file(back)["state_dict"]
    assert set(again) == set(original)
    for key, value in original.items():
        assert again[key].dtype == value.dtype and again[key].numpy().tobytes() == value.numpy().tobytes(), key
    assert load_torch_file(back)["hyper_parameters"]["zero_shot"] is True


def test_bare_mindspore_resnet_initialises_like_torchvision():
    """The MindSpore trunk starts from torchvision's distributions on its own: He-normal (fan-out) kernels,
    BatchNorm at 1 and 0 (statistics, not values)."""
    import torch

    from lang_seg.backends.mindspore_backend import named_parameters
    from lang_seg.modules.models.resnet import ResNetBackbone as TorchTrunk
    from lang_seg.modules.models_ms.resnet import ResNetBackbone as MsTrunk
    from lang_seg.names import ms_to_torch_name

    config = NetOptions("tiny_resnet").config.resnet
    torch.manual_seed(0)
    reference = {k: v.detach().numpy() for k, v in TorchTrunk(config).state_dict().items()}
    checked = 0
    for name, param in named_parameters(MsTrunk(config)):
        ours, theirs = param.asnumpy(), reference[ms_to_torch_name(name)]
        assert ours.shape == theirs.shape, name
        if theirs.min() == theirs.max():
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
            continue
        bound = 0.15 if ours.size >= 1000 else 0.5
        assert abs(ours.std() / theirs.std() - 1) < bound, (name, ours.std(), theirs.std())
        checked += 1
    assert checked == 1 + 4 * 3 + 4  # every convolution
