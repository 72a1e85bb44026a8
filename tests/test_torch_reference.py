"""The torch reference reproduces upstream lang-seg: keys, shapes and outputs."""
import json

import numpy as np
import pytest
import torch

import lang_seg
from lang_seg import BACKBONES, LangSegError, NetOptions
from lang_seg.names import UNUSED_PREFIXES
from lang_seg.modules.models.lseg_net import LSegNet, STAGES

from .helpers import FIXTURES, LABELS, TINY_SIZES, images


@pytest.mark.parametrize("backbone", ["clip_vitb32_384", "clip_vitl16_384", "clipRN50x16_vitl16_384"])
def test_state_dict_matches_upstream_keys_and_shapes(backbone):
    """Every key upstream's checkpoint holds exists here with the same shape, except the
    CLIP image tower (never used by LSeg); nothing else is added."""
    upstream = json.loads((FIXTURES / "upstream_keys.json").read_text())[backbone]
    upstream = {k[len("net."):]: tuple(v) for k, v in upstream.items()}
    with torch.device("meta"):
        net = LSegNet(NetOptions(backbone))
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    used = {k: v for k, v in upstream.items() if not k.startswith(UNUSED_PREFIXES)}
    assert ours == used
    assert len(upstream) - len(used) > 100  # the image tower is really there in upstream's file


@pytest.mark.parametrize("config", ["tiny_vitb32", "tiny_vitl16"])
def test_upstream_checkpoint_loads_strictly_and_matches_upstream_output(upstream_fixture, config):
    path, meta, data = upstream_fixture(config)
    o = meta["options"]
    with pytest.warns(UserWarning, match="not used by LSeg"):
        model = lang_seg.load_model(
            str(path), readout=o["readout"], arch_option=o["arch_option"], block_depth=o["block_depth"],
            activation=o["activation"],
        )
    assert model.options.backbone == config
    assert model.options.features == o["features"]
    assert all(k.startswith(UNUSED_PREFIXES) for k in model.unused_keys) and model.unused_keys
    out = model.logits(data["images"], list(data["labels"]))
    assert out.dtype == np.float32 and out.shape == data["logits"].shape
    np.testing.assert_allclose(out, data["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "backbone, options",
    [
        ("tiny_vitb32", dict(readout="project")),
        ("tiny_vitb32", dict(readout="ignore", use_bn=False, features=8)),
        ("tiny_vitb32", dict(readout="add", arch_option=1, block_depth=3, activation="relu")),
        ("tiny_vitl16", dict(readout="project", arch_option=2, block_depth=1, activation="tanh")),
        ("tiny_vitl16", dict(readout="ignore", arch_option=2, block_depth=2, activation="lrelu")),
    ],
)
def test_options_build_and_run(backbone, options):
    torch.manual_seed(0)
    model = lang_seg.load_model(None, backbone=backbone, **options)
    h, w = TINY_SIZES[backbone]
    with torch.no_grad():
        stages = model.net.forward_stages(torch.from_numpy(images((2, 3, h, w))), model.text_features(LABELS))
    assert tuple(stages) == STAGES
    config = model.options.config
    f = model.options.features
    # decoder resolutions: 1/4 .. 1/32 of the input for both layouts
    for i, (layer, scale) in enumerate(zip(("layer_1", "layer_2", "layer_3", "layer_4"), (4, 8, 16, 32))):
        assert stages[layer].shape == (2, config.reassemble_features[i], h // scale, w // scale)
    assert stages["path_1"].shape == (2, f, h // 2, w // 2)
    assert stages["image_features"].shape == (2, config.text.embed_dim, h // 2, w // 2)
    assert stages["out"].shape == (2, len(LABELS), h, w)
    # logits are cosine similarities scaled by 1/0.07
    assert float(stages["logits"].abs().max()) <= 1 / 0.07 + 1e-3
    if options.get("use_bn", True):
        assert hasattr(model.net.scratch.refinenet1.resConfUnit1, "bn1")
    else:
        assert not hasattr(model.net.scratch.refinenet1.resConfUnit1, "bn1")
    assert hasattr(model.net.scratch, "head_block") == (options.get("arch_option", 0) > 0)


def test_non_square_input_resizes_position_embedding():
    torch.manual_seed(0)
    model = lang_seg.load_model(None, backbone="tiny_vitb32")
    out = model.logits(images((1, 3, 64, 256)), ["a", "b"])
    assert out.shape == (1, 2, 64, 256)
    # same image, grid equal to the stored one: resizing is the identity
    pos = model.net.pretrained.model.pos_embed
    from lang_seg.modules.models.lseg_vit import resize_pos_embed

    assert torch.equal(resize_pos_embed(pos, 4, 4), pos)


def test_text_features_are_cached_per_label_set():
    model = lang_seg.load_model(None, backbone="tiny_vitl16")
    a = model.text_features(["cat", "dog"])
    assert model.text_features(["cat", "dog"]) is a
    b = model.text_features(["dog", "cat"])
    assert b is not a
    torch.testing.assert_close(b[0], a[1])


def test_half_logits_reproduce_upstream_fp16_cast():
    torch.manual_seed(0)
    full = lang_seg.load_model(None, backbone="tiny_vitl16")
    half = lang_seg.load_model(None, backbone="tiny_vitl16", half_logits=True)
    half.net.load_state_dict(full.net.state_dict())
    x = images((1, 3, 64, 64))
    a, b = full.logits(x, LABELS), half.logits(x, LABELS)
    assert b.dtype == np.float32
    assert 0 < np.abs(a - b).max() < 2e-2  # fp16 rounding of values up to 14.3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.logits(images((1, 3, 100, 64)), LABELS), "not a multiple of the patch size 16"),
        (lambda m: m.logits(images((1, 3, 64, 64)), []), "is empty"),
        (lambda m: m.logits(images((3, 64, 64)), LABELS), "4 dimensions"),
        (lambda m: m.logits(images((1, 4, 64, 64)), LABELS), "3 colour channels"),
        (lambda m: m.logits(images((1, 3, 64, 64)).astype(np.float64), LABELS), "float32"),
        (lambda m: m.logits(images((1, 3, 64, 64)).tolist(), LABELS), "numpy array"),
    ],
)
def test_bad_input_errors(call, message):
    model = lang_seg.load_model(None, backbone="tiny_vitl16")
    with pytest.raises(LangSegError, match=message):
        call(model)


def test_pretrained_offline_fails_with_clear_message(monkeypatch, tmp_path):
    from lang_seg.weights import load_clip_text_pretrained, load_timm_pretrained
    from lang_seg.modules.models.clip_text import ClipTextEncoder

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("LANGSEG_CLIP_CACHE", str(tmp_path))
    with pytest.raises(LangSegError, match="vit_base_patch32_384 are not in the Hugging Face cache: place model.safetensors "
                                           f"of the Hugging Face repo timm/vit_base_patch32_384.augreg_in21k_ft_in1k under {tmp_path}/"):
        load_timm_pretrained("vit_base_patch32_384")
    text = ClipTextEncoder(BACKBONES["clip_vitb32_384"].text)
    with pytest.raises(LangSegError, match=f"place ViT-B-32.pt at {tmp_path}/ViT-B-32.pt"):
        load_clip_text_pretrained(text, "ViT-B/32")
