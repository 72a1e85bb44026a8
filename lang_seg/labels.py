"""Label sets: parsing, the ADE20K class list, and CLIP tokenisation with checks."""
from __future__ import annotations

import functools
import importlib
import os
import warnings
from pathlib import Path
from typing import List, Sequence, Tuple

from .config import CONTEXT_LENGTH
from .errors import LangSegError

ADE20K_FILE = "ade20k_objectInfo150.txt"


def import_clip(module: str = "clip"):
    """OpenAI CLIP's package (``clip-anytorch``) or one of its modules, without its import-time warning
    (it imports the deprecated ``pkg_resources``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def read_label_file(path) -> List[str]:
    """Labels of an ``*_objectInfo150.txt`` file (``Idx,Ratio,Train,Val,Stuff,Name`` rows; the
    first ``;``-separated name is the label) or of a plain file with one label per line."""
    path = Path(path)
    if not path.is_file():
        raise LangSegError(f"label file {path} does not exist: pass a file with one label per line")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and lines[0].replace(" ", "").startswith("Idx,Ratio"):
        labels = [line.split(",")[-1].split(";")[0].strip() for line in lines[1:]]
        return check_labels(labels, source=str(path), unique=False)
    return check_labels(lines, source=str(path))


@functools.cache
def _ade20k_labels() -> Tuple[str, ...]:
    from lang_seg.label_files import LABEL_DIR  # package data: found in a wheel or non-editable install too

    return tuple(read_label_file(LABEL_DIR / ADE20K_FILE))


def ade20k_labels() -> List[str]:
    """ADE20K's 150 class names in its class order (read once per process)."""
    return list(_ade20k_labels())


def parse_labels(label_src: str) -> List[str]:
    """``'plant,grass,cat'``, a path to a label file, or ``'default'`` (the ADE20K classes)."""
    if label_src is None:
        raise LangSegError("no labels given: pass a comma-separated list such as 'cat,grass,other'")
    if label_src == "default":
        return ade20k_labels()
    if os.path.isfile(label_src):
        return read_label_file(label_src)
    return check_labels([part.strip() for part in label_src.split(",")], source=repr(label_src))


def check_labels(labels: Sequence[str], source: str = "labels", unique: bool = True) -> List[str]:
    """Stripped labels; a dataset's class list may repeat a name (ADE20K has two 'screen')."""
    if isinstance(labels, str):
        raise LangSegError(f"labels must be a list of strings, not the string {labels!r}: split it first")
    labels = [str(label).strip() for label in labels]
    if not labels:
        raise LangSegError(f"the label set from {source} is empty: give at least one label, e.g. 'cat,other'")
    if any(not label for label in labels):
        raise LangSegError(f"the label set from {source} has an empty label: remove stray commas or blank lines")
    seen = set()
    for label in labels if unique else ():
        if label in seen:
            raise LangSegError(f"label {label!r} appears twice in {source}: each label must be unique")
        seen.add(label)
    return labels


def check_context(labels: Sequence[str], context_length: int = CONTEXT_LENGTH) -> None:
    """Every label fits CLIP's context (clip refuses a longer one unless truncating): else one line naming it."""
    clip = import_clip()
    for label in labels:
        try:
            clip.tokenize([label], context_length=context_length)
        except RuntimeError:
            shown = label if len(label) <= 40 else label[:37] + "..."
            raise LangSegError(f"label {shown!r} is longer than CLIP's {context_length}-token context: "
                               "shorten it") from None


def tokenize(labels: Sequence[str], context_length: int = CONTEXT_LENGTH):
    """CLIP token ids ``(L, context_length)``; over-long labels are truncated with a warning."""
    labels = check_labels(labels, unique=False)
    clip = import_clip()
    try:
        return clip.tokenize(list(labels), context_length=context_length)
    except RuntimeError:
        warnings.warn(f"a label is longer than CLIP's {context_length}-token context: truncated", stacklevel=2)
        return clip.tokenize(list(labels), context_length=context_length, truncate=True)
