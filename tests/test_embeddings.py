"""Pixel and text embeddings, the public API (#23): shapes, unit norms, the identity that ties them to
``logits``, and the two backends against each other at the parity bounds; CLIP token ids without torch."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

from lang_seg import LangSegError, NetOptions
from lang_seg.config import LOGIT_SCALE
from lang_seg.backends.mindspore_backend import MindSporeModel
from lang_seg.backends.torch_backend import TorchModel
from lang_seg.labels import ade20k_labels, token_ids
from lang_seg.model import logits_from_embeddings
from lang_seg.tools.parity import STAGE_TOL, stage_row

from .helpers import LABELS, TINY_SIZES, images, nontrivial_state

CASES = [("tiny_vitb32", dict(readout="project")), ("tiny_vitl16", dict(readout="add", use_bn=False))]


def pair(backbone, **options):
    import torch

    torch.manual_seed(0)
    opts = NetOptions(backbone=backbone, **options)
    state = nontrivial_state(TorchModel(opts).state_dict(), 0)
    return TorchModel(opts, state=state), MindSporeModel(opts, state=state)


def within_parity(reference, other):
    row = stage_row("", reference, other)
    assert row.ok, f"max |a - b| = {row.max_abs:.3e} is {row.rel:.2e} of the reference's std (bound {STAGE_TOL:g})"


@pytest.mark.parametrize("backbone, options", CASES)
def test_embeddings_are_unit_vectors_that_give_the_logits_on_both_backends(backbone, options):
    models = pair(backbone, **options)
    h, w = TINY_SIZES[backbone]
    x = images((2, 3, h, w))
    out = {}
    for model in models:
        pixels, text = model.pixel_embeddings(x), model.text_embeddings(LABELS)
        c = model.options.config.text.embed_dim
        assert pixels.dtype == text.dtype == np.float32
        assert pixels.shape == (2, c, h // 2, w // 2) and text.shape == (len(LABELS), c)
        np.testing.assert_allclose(np.linalg.norm(pixels, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
        logits = model.logits(x, LABELS)
        within_parity(logits, logits_from_embeddings(pixels, text))  # scaled cosine, then x2 upsampling
        out[model.backend] = pixels, text
    for torch_side, ms_side in zip(out["torch"], out["mindspore"]):
        within_parity(torch_side, ms_side)


def test_with_a_head_block_the_embeddings_give_the_logits_stage():
    """arch_option 1/2 put a head block between the cosine logits and the upsampling: the identity holds for
    the ``logits`` stage (half resolution), not for ``logits()``."""
    import torch

    torch_model, ms_model = pair("tiny_vitl16", arch_option=1, block_depth=2, activation="relu")
    x = images((1, 3, 64, 96))
    with torch.no_grad():
        torch_stages = torch_model.net.forward_stages(torch.from_numpy(x), torch_model.text_features(LABELS))
    stages = {"torch": torch_stages["logits"].numpy(), "mindspore": ms_model.forward_stages(x, LABELS)["logits"]}
    for model in (torch_model, ms_model):
        cosine = np.einsum("nchw,lc->nlhw", model.pixel_embeddings(x), model.text_embeddings(LABELS))
        within_parity(stages[model.backend], LOGIT_SCALE * cosine)
        assert not np.allclose(model.logits(x, LABELS)[:, :, ::2, ::2], LOGIT_SCALE * cosine, atol=1e-2)


def test_embeddings_reject_bad_images():
    model = TorchModel(NetOptions(backbone="tiny_vitl16"))
    with pytest.raises(LangSegError, match="not a multiple of the patch size 16"):
        model.pixel_embeddings(images((1, 3, 60, 64)))
    with pytest.raises(LangSegError, match="must be float32"):
        model.pixel_embeddings(images((1, 3, 64, 64)).astype(np.float64))
    with pytest.raises(LangSegError, match="empty"):
        model.text_embeddings([])


def test_token_ids_are_clip_tokenize_without_importing_torch():
    import json

    labels = ade20k_labels() + ["a&amp;b", "  spaced   words ", "Ünïcödé café 日本語 x²½", "dog, " + "very " * 80 + "long"]
    code = ("import json, sys, warnings; warnings.simplefilter('ignore'); from lang_seg.labels import token_ids; "
            "ids = token_ids(json.loads(sys.argv[1])); "
            "print(json.dumps([ids.tolist(), str(ids.dtype), [m for m in ('torch', 'mindspore') if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(labels)], capture_output=True, text=True, check=True)
    ids, dtype, frameworks = json.loads(out.stdout)
    assert dtype == "int64" and frameworks == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import clip
    np.testing.assert_array_equal(np.array(ids), clip.tokenize(labels, truncate=True).numpy())
    with pytest.warns(UserWarning, match="longer than CLIP's 77-token context: truncated"):
        token_ids(labels[-1:])
