"""Readers of the few-shot benchmarks (PASCAL-5i, COCO-20i, FSS-1000) in the layout upstream reads.

``build_dataset(benchmark, datapath, fold, split, shot, ...)`` returns a map-style dataset of
episodes (``lang_seg.data.fewshot.common``: ``pascal.DatasetPASCAL``, ``coco.DatasetCOCO``,
``fss.DatasetFSS``); upstream's fold splits ship with the package (``splits/``), and a tiny
FSS-1000-layout set is bundled (``bundled/``, written by ``lang_seg.data.fewshot.bundled``).
"""
from __future__ import annotations

import os
from typing import Optional

from lang_seg.errors import LangSegError
from lang_seg.fewshot import UPSTREAM_DATAPATH, check_benchmark


def build_dataset(benchmark: str, datapath, fold: int, split: str, shot: int, **kwargs):
    """Upstream's ``FSSDataset.build_dataloader`` dataset: ``split`` trn, val or test (PASCAL and COCO test on
    their val lists); kwargs: ``img_size``, ``norm`` (mean, std), ``seed``, ``load_support``."""
    from .coco import DatasetCOCO
    from .fss import DatasetFSS
    from .pascal import DatasetPASCAL

    check_benchmark(benchmark)
    if datapath is None:
        raise LangSegError("pass --datapath, the folder holding the benchmark (HSNet's Datasets_HSN layout)")
    reader = {"pascal": DatasetPASCAL, "coco": DatasetCOCO, "fss": DatasetFSS}[benchmark]
    return reader(datapath, fold=fold, split=split, shot=shot, **kwargs)


def resolve_datapath(benchmark: str, datapath: Optional[str], say=print) -> str:
    """``datapath`` as given; without one, upstream's ``fewshot_data/Datasets_HSN``, or for FSS-1000 when that
    holds no ``FSS-1000/``, the bundled tiny set (said in one line)."""
    if datapath is not None:
        return str(datapath)
    if benchmark == "fss" and not os.path.isdir(os.path.join(UPSTREAM_DATAPATH, "FSS-1000")):
        from .bundled import ROOT

        say(f"no --datapath and no {UPSTREAM_DATAPATH}/FSS-1000 here: the bundled tiny FSS-1000-layout set "
            f"({ROOT}; generated pictures, its scores say nothing about LSeg)")
        return str(ROOT)
    return UPSTREAM_DATAPATH
