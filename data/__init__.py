"""Datasets for lang-seg (torch side), without torch-encoding."""
from __future__ import annotations

import os

from lang_seg.checkout import same_package

same_package(__name__)  # upstream's top-level spelling in a checkout: this package under its installed name

from lang_seg.errors import LangSegError

from .ade20k import ADE20KSegmentation

DATASETS = {"ade20k": ADE20KSegmentation}
UPSTREAM_WORKERS = 16  # upstream's training DataLoaders (its LSegmentationModule) and test_lseg.py --workers


def default_workers() -> int:
    """Upstream's 16 data-loading processes, at most one per core of this machine (both commands' default)."""
    return min(UPSTREAM_WORKERS, os.cpu_count() or 1)


def get_available_datasets():
    return list(DATASETS)


def get_dataset(name: str, **kwargs):
    if name.lower() not in DATASETS:
        raise LangSegError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name.lower()](**kwargs)
