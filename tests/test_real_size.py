"""Parity on one real-size backbone: clip_vitb32_384 at 384x384 (random non-trivial weights)."""
import pytest

from lang_seg import NetOptions
from lang_seg.backends.mindspore_backend import MindSporeModel
from lang_seg.backends.torch_backend import TorchModel
from lang_seg.labels import ade20k_labels
from lang_seg.tools.parity import format_table, forward_rows

from .helpers import images, nontrivial_state


@pytest.mark.slow
def test_clip_vitb32_384_forward_stages_match_at_384():
    import torch

    torch.manual_seed(0)
    options = NetOptions("clip_vitb32_384")
    state = nontrivial_state(TorchModel(options).state_dict())
    torch_model = TorchModel(options, state=state)
    ms_model = MindSporeModel(options, state=state)
    labels = ade20k_labels()  # the 150 ADE20K classes
    rows = forward_rows(torch_model, ms_model, images((1, 3, 384, 384)), labels)
    assert [r.name for r in rows][:2] == ["text_features", "layer_1"]
    assert len(rows) == 13  # shapes are part of each row: (1, 150, 384, 384) at "out"
    failed = [r for r in rows if not r.ok]
    assert not failed, "\n" + format_table(rows)
