"""Evaluate LSeg on a dataset or segment pictures with your labels, as upstream's ``test_lseg.py``
(``lseg-test`` once installed).

    python test_lseg.py --eval --dataset ade20k --data_path ../datasets --weights CKPT --backend mindspore
    python test_lseg.py --weights CKPT --image cat.jpg --label_src 'plant,grass,cat,stone,other'

The command lives in ``lang_seg.commands.test``.
"""
import sys

from lang_seg.commands.test import main

if __name__ == "__main__":
    sys.exit(main())
