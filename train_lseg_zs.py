"""Train zero-shot LSeg on a few-shot benchmark fold (upstream's LSegModuleZS recipe; ``lseg-train-zs`` once
installed).

    python train_lseg_zs.py --exp_name pascal_fold0 --dataset pascal --fold 0 --data_path ../Datasets_HSN \
        --backbone clip_resnet101 --backend mindspore ...

The command lives in ``lang_seg.commands.train_zs``.
"""
import sys

from lang_seg.commands.train_zs import build, build_parser, main  # noqa: F401 (upstream-style script API)

if __name__ == "__main__":
    sys.exit(main())
