"""Zero-shot and few-shot LSeg on PASCAL-5i, COCO-20i and FSS-1000, as upstream's ``test_lseg_zs.py``
(``lseg-test-zs`` once installed).

    python test_lseg_zs.py --backbone clip_resnet101 --dataset pascal --fold 0 --nshot 0 \
        --weights checkpoints/pascal_fold0.ckpt --datapath ../Datasets_HSN --backend mindspore

The command lives in ``lang_seg.commands.test_zs``.
"""
import sys

from lang_seg.commands.test_zs import main

if __name__ == "__main__":
    sys.exit(main())
