"""Train LSeg with upstream lang-seg's flags or as a Lightning CLI (``lseg-train`` once installed).

    python train_lseg.py --dataset ade20k --data_path ../datasets --backbone clip_vitl16_384 --backend mindspore ...
    python train_lseg.py fit --config configs/bundled_tiny.yaml

The command lives in ``lang_seg.commands.train``.
"""
import sys

from lang_seg.commands.train import build, build_parser, main  # noqa: F401 (upstream-style script API)

if __name__ == "__main__":
    sys.exit(main())
