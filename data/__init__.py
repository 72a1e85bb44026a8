"""Datasets for lang-seg (torch side), without torch-encoding."""
from __future__ import annotations

from lang_seg.checkout import same_package

same_package(__name__)  # upstream's top-level spelling in a checkout: this package under its installed name

from lang_seg.errors import LangSegError

from .ade20k import ADE20KSegmentation

DATASETS = {"ade20k": ADE20KSegmentation}


def get_available_datasets():
    return list(DATASETS)


def get_dataset(name: str, **kwargs):
    if name.lower() not in DATASETS:
        raise LangSegError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name.lower()](**kwargs)
