"""The datasets lang-seg reads, by name (``--dataset NAME``), and what the commands ask of them.

Each reader class states its own facts (``data/base.py``): its name, its labels,
how its mask values map to classes, upstream's base and crop sizes and evaluation
scales. This table only maps names to readers, so adding a dataset is one class
and one entry here; train_lseg.py, test_lseg.py and the data module take sizes,
scales and labels from the class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

from lang_seg.errors import LangSegError

from .ade20k import ADE20KSegmentation
from .base import SegmentationDataset
from .cityscapes import CitySegmentation
from .coco import COCOSegmentation
from .folder import FolderSegmentation
from .pascal import VOCAugSegmentation, VOCSegmentation
from .pcontext import ContextSegmentation

DATASETS = {cls.NAME: cls for cls in (ADE20KSegmentation, FolderSegmentation, VOCSegmentation, VOCAugSegmentation,
                                      ContextSegmentation, CitySegmentation, COCOSegmentation)}


def dataset_class(name: str) -> Type[SegmentationDataset]:
    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise LangSegError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name.lower()]


def get_dataset(name: str, **kwargs) -> SegmentationDataset:
    return dataset_class(name)(**kwargs)


def data_root(data_path: Optional[str]) -> Path:
    """``--data_path`` (relative to the working directory; ``bundled`` names the package's own), or, when
    there is none, the small datasets bundled with the package (ADE20K's and PASCAL VOC's layouts side by
    side in ``data/bundled``)."""
    from .bundled import ROOT, resolve

    return ROOT if data_path is None else Path(resolve(data_path))


def dataset_labels(name: str, data_path: Optional[str] = None) -> List[str]:
    """The class names of dataset ``name`` in class-id order: what the model is trained on when no labels
    are given (a folder dataset's come from its ``labels.txt``)."""
    return dataset_class(name).read_labels(data_root(data_path))


def _as_list(value: Union[None, str, Sequence[str]]) -> list:
    if value is None or isinstance(value, str):
        return [None] if value is None else [part.strip() for part in value.split(",")]
    return list(value)


def sources(datasets: Union[str, Sequence[str]], data_paths: Union[None, str, Sequence[str]] = None
            ) -> List[Tuple[Type[SegmentationDataset], Path]]:
    """``(reader class, root)`` of each dataset of a run: ``'ade20k,pascal_voc'`` with ``'A,B'`` (one path
    each, in order) or with one path (every dataset under it) or none (the bundled data)."""
    names, paths = _as_list(datasets), _as_list(data_paths)
    if any(not name for name in names):
        raise LangSegError(f"the dataset list {datasets!r} has an empty name: remove stray commas")
    classes = [dataset_class(name) for name in names]
    if any(path == "" for path in paths):
        raise LangSegError(f"the data path list {data_paths!r} has an empty path: remove stray commas")
    if len(paths) == 1:
        paths = paths * len(names)
    if len(paths) != len(names):
        raise LangSegError(f"{len(names)} datasets ({', '.join(names)}) but {len(paths)} data paths: give one path "
                           f"per dataset, in the same order, or one path holding them all")
    return [(cls, data_root(path)) for cls, path in zip(classes, paths)]


def source_names(found: Sequence[Tuple[Type[SegmentationDataset], Path]]) -> List[str]:
    """Each dataset's name in a run (its metrics are logged under it): the reader's name, ``_2``, ``_3`` added
    when one is given again (two folder datasets, say)."""
    count: dict = {}
    names = []
    for reader, _ in found:
        count[reader.NAME] = count.get(reader.NAME, 0) + 1
        names.append(reader.NAME if count[reader.NAME] == 1 else f"{reader.NAME}_{count[reader.NAME]}")
    return names


def run_labels(datasets, data_paths=None) -> Union[List[str], Dict[str, List[str]]]:
    """The model's labels for a run when none are given: the dataset's class names, or, for several,
    ``{name: class names}`` in the run's order."""
    found = sources(datasets, data_paths)
    sets = [reader.read_labels(root) for reader, root in found]
    return sets[0] if len(sets) == 1 else dict(zip(source_names(found), sets))
