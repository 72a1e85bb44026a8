"""Weight conversion between the torch reference and the MindSpore port.

The MindSpore cells carry the torch module paths, so names map by suffix alone:
BatchNorm and LayerNorm ``gamma/beta/moving_mean/moving_variance`` and the
embedding table. Tensors only torch has (BatchNorm's ``num_batches_tracked``,
the ViT's final norm and classifier head, blocks after the last hooked one, and
the CLIP image tower of upstream checkpoints) ride along in MindSpore
checkpoints under ``torch_only.`` so that a round trip is bit-exact.

    python -m lang_seg.convert SRC DST   # torch .ckpt -> MindSpore .ckpt, or back
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, Iterable, Tuple

import numpy as np

from .checkpoint import (
    UNUSED_PREFIXES,
    Checkpoint,
    atomic_save,
    infer_options,
    is_torch_file,
    match_state,
    read_checkpoint,
    save_checkpoint,
)
from .config import NetOptions
from .errors import LangSegError, cli_errors

_MS_SUFFIX_TO_TORCH = {
    ".gamma": ".weight",
    ".beta": ".bias",
    ".moving_mean": ".running_mean",
    ".moving_variance": ".running_var",
    ".embedding_table": ".weight",
}
TORCH_ONLY_PREFIX = "torch_only."
OPTIONS_KEY = "lang_seg_options"
SCALARS_KEY = "lang_seg_scalars"


def ms_to_torch_name(name: str) -> str:
    for suffix, torch_suffix in _MS_SUFFIX_TO_TORCH.items():
        if name.endswith(suffix):
            return name[: -len(suffix)] + torch_suffix
    return name


def is_torch_only(name: str, options: NetOptions) -> bool:
    """Tensors the torch reference holds but LSeg's computation never reads."""
    if name.endswith(".num_batches_tracked") or name.startswith(UNUSED_PREFIXES):
        return True
    if name.startswith(("pretrained.model.norm.", "pretrained.model.head.", "pretrained.model.fc_norm.")):
        return True
    if name.startswith("pretrained.model.blocks."):
        return int(name.split(".")[3]) > options.config.hooks[-1]
    return False


def torch_to_ms(state: Dict[str, np.ndarray], ms_names: Iterable[Tuple[str, tuple]], options: NetOptions, what="checkpoint"):
    """(ms_state, torch_only): every MindSpore parameter filled, every torch tensor accounted for."""
    ms_names = list(ms_names)
    expected = {ms_to_torch_name(name): shape for name, shape in ms_names}
    extra = match_state(expected, state, what, extra_ok=lambda key: is_torch_only(key, options))
    ms_state = {name: np.asarray(state[ms_to_torch_name(name)]) for name, _ in ms_names}
    return ms_state, {k: state[k] for k in extra}


def ms_to_torch(ms_state: Dict[str, np.ndarray], torch_only: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    state = {ms_to_torch_name(k): v for k, v in ms_state.items()}
    clash = set(state) & set(torch_only)
    if clash:
        raise LangSegError(f"MindSpore checkpoint holds {sorted(clash)[0]} twice: it is corrupt")
    state.update(torch_only)
    return state


# -- MindSpore checkpoint files ---------------------------------------------
def write_mindspore_checkpoint(path, ms_state: Dict[str, np.ndarray], torch_only: Dict[str, np.ndarray], options: NetOptions) -> None:
    import mindspore as ms

    entries = [{"name": k, "data": ms.Tensor(np.asarray(v, order="C"))} for k, v in ms_state.items()]
    entries += [{"name": TORCH_ONLY_PREFIX + k, "data": ms.Tensor(np.asarray(v, order="C"))} for k, v in torch_only.items()]
    # MindSpore stores 0-d tensors as shape (1,): remember which were scalars
    scalars = [k for k, v in {**ms_state, **{TORCH_ONLY_PREFIX + k: v for k, v in torch_only.items()}}.items() if np.ndim(v) == 0]
    append = {OPTIONS_KEY: json.dumps(options.to_dict()), SCALARS_KEY: json.dumps(scalars)}
    atomic_save(lambda tmp: ms.save_checkpoint(entries, tmp, append_dict=append), path, suffix=".ckpt")


def read_mindspore_checkpoint(path) -> Checkpoint:
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
    return Checkpoint(ms_to_torch(ms_state, torch_only), hparams, str(path))


def convert_file(src, dst, **overrides) -> str:
    """Convert ``src`` to the other framework's format; returns the direction."""
    ckpt = read_checkpoint(src)
    options = infer_options(ckpt.state, ckpt.hyper_parameters, **overrides)
    if is_torch_file(src):
        from .backends.mindspore_backend import ms_parameter_shapes

        ms_state, torch_only = torch_to_ms(ckpt.state, ms_parameter_shapes(options), options, f"checkpoint {src}")
        write_mindspore_checkpoint(dst, ms_state, torch_only, options)
        return "torch -> mindspore"
    save_checkpoint(dst, ckpt.state, options)
    return "mindspore -> torch"


@cli_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lang_seg.convert",
        description="Convert a lang-seg checkpoint between torch (Lightning .ckpt) and MindSpore (.ckpt) formats; "
        "the direction follows from the source file's type.",
    )
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--backbone", default=None, help="override the backbone inferred from the weights")
    parser.add_argument("--arch_option", type=int, default=None)
    parser.add_argument("--block_depth", type=int, default=None)
    parser.add_argument("--activation", default=None)
    parser.add_argument("--readout", default=None)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("src", "dst")}
    direction = convert_file(args.src, args.dst, **overrides)
    print(f"{direction}: wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
