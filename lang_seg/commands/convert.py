"""Convert a lang-seg checkpoint between the torch (Lightning) and MindSpore formats.

    lseg-convert SRC DST   # torch .ckpt -> MindSpore .ckpt, or back

Names map by ``lang_seg.names``; tensors only torch has (BatchNorm's
``num_batches_tracked``, the ViT's final norm and classifier head, blocks after
the last hooked one, the CLIP image tower of upstream checkpoints) ride along in
MindSpore files under ``torch_only.``, so a round trip is bit-exact.
"""
from __future__ import annotations

import argparse
import sys

from lang_seg.checkpoint import infer_options, is_torch_file, read_checkpoint, save_checkpoint
from lang_seg.checkpoint_ms import write_mindspore_checkpoint
from lang_seg.errors import cli_errors
from lang_seg.names import torch_to_ms


def convert_file(src, dst, trust: bool = False, **overrides) -> str:
    """Convert ``src`` to the other framework's format; returns the direction."""
    ckpt = read_checkpoint(src, trust)
    options = infer_options(ckpt.state, ckpt.hyper_parameters, **overrides)
    if is_torch_file(src):
        from lang_seg.backends.mindspore_backend import ms_parameter_shapes

        ms_state, torch_only = torch_to_ms(ckpt.state, ms_parameter_shapes(options), options, f"checkpoint {src}")
        write_mindspore_checkpoint(dst, ms_state, torch_only, options)
        return "torch -> mindspore"
    save_checkpoint(dst, ckpt.state, options)
    return "mindspore -> torch"


@cli_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="lseg-convert",
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
    parser.add_argument("--trust-checkpoint", dest="trust", action="store_true",
                        help="load a torch file holding objects other than tensors (runs code from it: trusted files only)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("src", "dst", "trust")}
    direction = convert_file(args.src, args.dst, args.trust, **overrides)
    print(f"{direction}: wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
