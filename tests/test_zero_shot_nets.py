"""Upstream's zero-shot networks on the torch reference: upstream's keys, strict loading of its checkpoints,
logits equal to upstream's own zero-shot code (fixtures by tests/fixtures/make_upstream_zs_fixtures.py)."""
import json

import numpy as np
import pytest
import torch

import lang_seg
from lang_seg import LangSegError, NetOptions
from lang_seg.backends.torch_backend import TorchModel
from lang_seg.checkpoint import Checkpoint, checkpoint_kind, read_checkpoint, save_checkpoint
from lang_seg.names import is_unused

from .helpers import FIXTURES, seeded_state

TORCH_TOL = 1e-5  # upstream's code against the reference, fp32 CPU (measured: ViT 0.0, ResNet <= 1.5e-6)


def episode_logits(model, data):
    """Image i scored on its own episode ["others", label_list[class_info[i]]], from one batch as upstream runs it."""
    rows = []
    for i, c in enumerate(data["class_info"]):
        rows.append(model.logits(data["images"], ["others", str(data["label_list"][c])])[i])
    return np.stack(rows)


def zs_data(name):
    return np.load(FIXTURES / f"upstream_zs_{name}_out.npz")


@pytest.mark.parametrize("backbone", ["clip_resnet101", "clip_vitb32_384"])
def test_keys_and_shapes_are_upstreams(backbone):
    from lang_seg.modules.models.lseg_net_zs import build_net

    upstream = json.loads((FIXTURES / "upstream_zs_keys.json").read_text())[backbone]
    with torch.device("meta"):
        net = build_net(NetOptions(backbone, zero_shot=True))
    ours = {"net." + k: list(v.shape) for k, v in net.state_dict().items()}
    expected = {k: v for k, v in upstream.items() if not is_unused(k[len("net."):])}
    assert ours == expected
    assert type(net).__name__ == ("LSegRNNetZS" if backbone == "clip_resnet101" else "LSegNetZS")


def test_upstream_zero_shot_vit_gives_upstreams_logits():
    """Upstream's LSegNetZS loads an LSegNet checkpoint strictly (the generator does so): the same net."""
    data = zs_data("tiny_vitb32")
    path = FIXTURES / "upstream_tiny_vitb32.ckpt"
    with pytest.warns(UserWarning, match="not used by LSeg"):
        model = lang_seg.load_model(str(path), zero_shot=True)
    assert type(model.net).__name__ == "LSegNetZS"
    assert np.abs(episode_logits(model, data) - data["logits"]).max() <= TORCH_TOL


def test_upstream_resnet_checkpoint_loads_strictly_and_gives_upstreams_logits():
    data = zs_data("tiny_resnet")
    meta = json.loads((FIXTURES / "upstream_zs_tiny_resnet.json").read_text())
    with pytest.warns(UserWarning, match="not used by LSeg"):
        model = lang_seg.load_model(str(FIXTURES / "upstream_zs_tiny_resnet.ckpt"))
    assert type(model.net).__name__ == "LSegRNNetZS"
    assert model.options.backbone == "tiny_resnet" and model.options.zero_shot
    assert model.options.features == meta["options"]["features"]
    assert all(k.startswith("clip_pretrained.visual.") or k == "clip_pretrained.logit_scale" for k in model.unused_keys)
    out = episode_logits(model, data)
    assert out.shape == data["logits"].shape == (2, 2) + tuple(meta["size"])
    assert np.abs(out - data["logits"]).max() <= TORCH_TOL
    # the two episodes differ ("dog", "potted plant"): a model scoring both on one label set would not pass
    assert not np.allclose(model.logits(data["images"], ["others", "dog"]), data["logits"], atol=1e-3)


@pytest.mark.slow
def test_real_size_resnet101_gives_upstreams_logits():
    """Weights rebuilt from the seed as the generator made them for upstream's real ResNet-101 net."""
    data = zs_data("clip_resnet101")
    options = NetOptions("clip_resnet101")
    with torch.device("meta"):
        from lang_seg.modules.models.lseg_net_zs import build_net

        shapes = {k: tuple(v.shape) for k, v in build_net(options).state_dict().items()}
    model = TorchModel(options, state=seeded_state(shapes, seed=0))
    out = episode_logits(model, data)
    assert np.abs(out - data["logits"]).max() <= TORCH_TOL * 10 * float(data["logits"].std())


def test_trunk_is_torchvisions_resnet101():
    """torchvision's own ResNet-101 weights load strictly into the trunk and give its stage outputs."""
    import torchvision

    from lang_seg.modules.models.resnet import ResNetBackbone

    torch.manual_seed(0)
    reference = torchvision.models.resnet101().eval()
    trunk = ResNetBackbone(NetOptions("clip_resnet101").config.resnet).eval()
    trunk.load_torchvision(reference.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours = trunk(x)
        y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for stage, out in zip((reference.layer1, reference.layer2, reference.layer3, reference.layer4), ours):
            y = stage(y)
            assert torch.equal(y, out)
    assert [t.shape[1] for t in ours] == [256, 512, 1024, 2048]


def test_checkpoint_kind_tells_zero_shot_from_lseg(tmp_path):
    resnet = read_checkpoint(FIXTURES / "upstream_zs_tiny_resnet.ckpt")
    upstream_vit = read_checkpoint(FIXTURES / "upstream_tiny_vitb32.ckpt")
    with_head = read_checkpoint(FIXTURES / "upstream_tiny_vitl16.ckpt")
    assert checkpoint_kind(resnet) is True  # the ResNet trunk exists only zero-shot
    assert checkpoint_kind(upstream_vit) is None  # the same tensors either way
    assert checkpoint_kind(with_head) is False  # a head block: LSegNet
    no_projection = {k: v for k, v in upstream_vit.state.items() if ".project." not in k}
    assert checkpoint_kind(Checkpoint(no_projection, {})) is False  # readout ignore/add: LSegNet
    state = upstream_vit.state
    kinds = {}
    for name, hparams in {"fss": {"dataset": "fss"}, "ade": {"dataset": "ade20k"}, "zs": {"zero_shot": True},
                          "old": {"backbone": "tiny_vitb32", "num_features": 16}, "unknown": {"zero_shot": None}}.items():
        kinds[name] = checkpoint_kind(Checkpoint(state, hparams))
    assert kinds == {"fss": True, "ade": False, "zs": True, "old": False, "unknown": None}
    # this project's files say it in their options, and keep "not known" as not known
    for zero_shot in (True, None):
        options = NetOptions("tiny_vitb32", features=16, zero_shot=zero_shot)
        save_checkpoint(tmp_path / "m.ckpt", state, options)
        assert checkpoint_kind(read_checkpoint(tmp_path / "m.ckpt")) is zero_shot


def test_zero_shot_options_are_checked():
    assert NetOptions("tiny_resnet").zero_shot is True
    assert NetOptions("tiny_vitb32").zero_shot is None
    with pytest.raises(LangSegError, match="exists only as upstream's zero-shot network"):
        NetOptions("clip_resnet101", zero_shot=False)
    with pytest.raises(LangSegError, match="always have BatchNorm and no head block"):
        NetOptions("tiny_vitb32", zero_shot=True, arch_option=1, block_depth=1)
    with pytest.raises(LangSegError, match="always have BatchNorm"):
        NetOptions("tiny_resnet", use_bn=False)
    from lang_seg.modules.models.lseg_net import LSegNet

    with pytest.raises(LangSegError, match="has no ViT"):
        LSegNet(NetOptions("tiny_resnet"))


def test_pretrained_resnet_offline_names_the_file():
    with pytest.raises(LangSegError, match=r"torchvision's resnet101 weights .*resnet101-[0-9a-f]+\.pth"):
        lang_seg.load_model(None, backbone="clip_resnet101", pretrained=True)


def test_resnet_logits_need_multiples_of_32():
    model = lang_seg.load_model(None, backbone="tiny_resnet", seed=0)
    assert model.patch_size == 32
    with pytest.raises(LangSegError, match="not a multiple of the patch size 32"):
        model.logits(np.zeros((1, 3, 64, 80), np.float32), ["others", "dog"])


def test_segment_refuses_imagenet_normalised_backbones():
    """The multi-scale evaluator normalises as LSeg's ViTs were trained; the ResNet trunk wants ImageNet's."""
    model = lang_seg.load_model(None, backbone="tiny_resnet", seed=0)
    with pytest.raises(LangSegError, match="takes ImageNet-normalised ones"):
        model.segment(np.zeros((64, 64, 3), np.uint8), ["others", "dog"], scales=(1.0,), flip=False)
