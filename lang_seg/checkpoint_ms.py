"""MindSpore checkpoint files written by this project: the MindSpore network's weights plus the
torch-only tensors (under ``torch_only.``) and the network options, so a round trip is bit-exact."""
from __future__ import annotations

import json
from typing import Dict, Tuple

import numpy as np

from .config import NetOptions
from .errors import LangSegError
from .files import atomic_write
from .names import TORCH_ONLY_PREFIX, ms_to_torch

OPTIONS_KEY = "lang_seg_options"
SCALARS_KEY = "lang_seg_scalars"


def write_mindspore_checkpoint(path, ms_state: Dict[str, np.ndarray], torch_only: Dict[str, np.ndarray],
                               options: NetOptions) -> None:
    import mindspore as ms

    tensors = {**ms_state, **{TORCH_ONLY_PREFIX + k: v for k, v in torch_only.items()}}
    entries = [{"name": k, "data": ms.Tensor(np.asarray(v, order="C"))} for k, v in tensors.items()]
    # MindSpore stores 0-d tensors as shape (1,): remember which were scalars
    scalars = [k for k, v in tensors.items() if np.ndim(v) == 0]
    append = {OPTIONS_KEY: json.dumps(options.to_dict()), SCALARS_KEY: json.dumps(scalars)}
    atomic_write(path, lambda tmp: ms.save_checkpoint(entries, tmp, append_dict=append), suffix=".ckpt")


def read_mindspore_checkpoint(path) -> Tuple[Dict[str, np.ndarray], dict]:
    """``(state under torch names, network options)`` of a file from ``write_mindspore_checkpoint``."""
    import mindspore as ms

    try:
        params = ms.load_checkpoint(str(path))
    except Exception as exc:
        raise LangSegError(
            f"checkpoint {path} is neither a torch file nor a readable MindSpore checkpoint ({type(exc).__name__})"
        ) from None
    hparams = json.loads(str(params.pop(OPTIONS_KEY, "{}")))
    scalars = set(json.loads(str(params.pop(SCALARS_KEY, "[]"))))
    ms_state, torch_only = {}, {}
    for name, value in params.items():
        array = value.asnumpy()
        if name in scalars:
            array = array.reshape(())
        if name.startswith(TORCH_ONLY_PREFIX):
            torch_only[name[len(TORCH_ONLY_PREFIX):]] = array
        else:
            ms_state[name] = array
    return ms_to_torch(ms_state, torch_only), hparams
