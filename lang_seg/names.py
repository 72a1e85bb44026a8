"""The torch <-> MindSpore parameter-name map, and which tensors LSeg reads, trains or never touches.

Numpy-only: checkpoints, both backends, the training bridge and the parity
checks all use this module, and it imports no framework.

MindSpore cells carry the torch module paths, so names differ by suffix alone
(BatchNorm/LayerNorm ``gamma/beta/moving_mean/moving_variance``, the embedding
table). Tensors only the torch reference holds ride along in MindSpore files
under ``torch_only.``.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Tuple

import numpy as np

from .config import NetOptions
from .errors import LangSegError

_MS_SUFFIX_TO_TORCH = {
    ".gamma": ".weight",
    ".beta": ".bias",
    ".moving_mean": ".running_mean",
    ".moving_variance": ".running_var",
    ".embedding_table": ".weight",
}
TORCH_ONLY_PREFIX = "torch_only."
# Stored by upstream checkpoints, never read by LSeg: CLIP's image tower and its logit scale.
UNUSED_PREFIXES = ("clip_pretrained.visual.", "clip_pretrained.logit_scale")
# timm's ViT parts after the last hooked block: kept in the torch net for upstream's keys only.
VIT_TAIL_PREFIXES = ("pretrained.model.norm.", "pretrained.model.head.", "pretrained.model.fc_norm.")
VIT_BLOCK_PREFIX = "pretrained.model.blocks."
# Upstream's optimizer holds these; the CLIP text tower stays frozen.
TRAINABLE_PREFIXES = ("pretrained.", "scratch.")
# The deepest fusion block has no skip input: its first residual unit is never reached.
UNREACHED_PREFIXES = ("scratch.refinenet4.resConfUnit1.",)


def ms_to_torch_name(name: str) -> str:
    for suffix, torch_suffix in _MS_SUFFIX_TO_TORCH.items():
        if name.endswith(suffix):
            return name[: -len(suffix)] + torch_suffix
    return name


def is_unused(name: str) -> bool:
    """Upstream checkpoint tensors that LSeg never reads (reported, then skipped)."""
    return name.startswith(UNUSED_PREFIXES)


def is_torch_only(name: str, options: NetOptions) -> bool:
    """Tensors the torch reference holds but LSeg's computation never reads (the MindSpore net has no cell for them)."""
    if name.endswith(".num_batches_tracked") or is_unused(name) or name.startswith(VIT_TAIL_PREFIXES):
        return True
    if name.startswith(VIT_BLOCK_PREFIX):
        return int(name.split(".")[3]) > options.config.hooks[-1]
    return False


def is_trained(name: str, options: NetOptions) -> bool:
    """Parameters upstream's SGD updates: backbone and decoder, less what the forward never reaches
    (the ViT tail, the deepest fusion block's first residual unit)."""
    return (name.startswith(TRAINABLE_PREFIXES) and not name.startswith(UNREACHED_PREFIXES)
            and not is_torch_only(name, options))


def match_state(expected: Dict[str, tuple], state: Dict[str, np.ndarray], what: str = "checkpoint",
                extra_ok: Callable[[str], bool] = is_unused) -> List[str]:
    """Strict key and shape check of ``state`` against ``{name: shape}``.

    Keys for which ``extra_ok`` holds may be present without being expected;
    returns them sorted. Anything else missing, unexpected or misshapen is an error
    naming the first such key.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not extra_ok(k)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise LangSegError(
            f"{what} does not fit the network: {', '.join(parts)}; is it for another backbone or options?"
        )
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise LangSegError(
                f"{what} does not fit the network: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(shape)}; is it for another backbone or features size?"
            )
    return sorted(k for k in state if k not in expected)


def torch_to_ms(state: Dict[str, np.ndarray], ms_shapes: Iterable[Tuple[str, tuple]], options: NetOptions,
                what: str = "checkpoint") -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """``(ms_state, torch_only)``: every MindSpore parameter filled, every torch tensor accounted for."""
    ms_shapes = list(ms_shapes)
    expected = {ms_to_torch_name(name): shape for name, shape in ms_shapes}
    extra = match_state(expected, state, what, extra_ok=lambda key: is_torch_only(key, options))
    ms_state = {name: np.asarray(state[ms_to_torch_name(name)]) for name, _ in ms_shapes}
    return ms_state, {k: state[k] for k in extra}


def ms_to_torch(ms_state: Dict[str, np.ndarray], torch_only: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    state = {ms_to_torch_name(k): v for k, v in ms_state.items()}
    clash = set(state) & set(torch_only)
    if clash:
        raise LangSegError(f"MindSpore checkpoint holds {sorted(clash)[0]} twice: it is corrupt")
    state.update(torch_only)
    return state
