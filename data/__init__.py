"""Datasets for lang-seg (torch side), without torch-encoding: the readers by name are in ``registry``."""
from __future__ import annotations

import os

from lang_seg.checkout import same_package

same_package(__name__)  # upstream's top-level spelling in a checkout: this package under its installed name

from .ade20k import ADE20KSegmentation  # noqa: E402
from .registry import DATASETS, dataset_class, dataset_labels, get_dataset  # noqa: E402


UPSTREAM_WORKERS = 16  # upstream's training DataLoaders (its LSegmentationModule) and test_lseg.py --workers


def default_workers() -> int:
    """Upstream's 16 data-loading processes, at most one per core of this machine (both commands' default)."""
    return min(UPSTREAM_WORKERS, os.cpu_count() or 1)

__all__ = ["ADE20KSegmentation", "DATASETS", "dataset_class", "dataset_labels", "get_dataset", "get_available_datasets",
           "default_workers", "UPSTREAM_WORKERS"]


def get_available_datasets():
    return list(DATASETS)
