"""Label sets: parsing, the ADE20K class list, and CLIP tokenisation with checks."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .config import CONTEXT_LENGTH
from .errors import LangSegError

ADE20K_FILE = "ade20k_objectInfo150.txt"
CLIP_VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"  # CLIP's byte-pair merges, shipped in the clip-anytorch wheel
START, END = "<|startoftext|>", "<|endoftext|>"
_NO_CLIP = "CLIP's tokenizer is not installed ({}): pip install clip-anytorch (it needs ftfy and regex)"


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


def _clip_folder() -> Path:
    spec = importlib.util.find_spec("clip")  # finds the package without running its __init__ (which imports torch)
    if spec is None or not spec.submodule_search_locations:
        raise LangSegError(_NO_CLIP.format("no module named 'clip'"))
    return Path(list(spec.submodule_search_locations)[0])


def clip_vocabulary() -> Path:
    """CLIP's vocabulary file, inside the installed ``clip`` package."""
    return _clip_folder() / CLIP_VOCABULARY


@functools.lru_cache(maxsize=4)
def _bpe(vocabulary: str):
    """CLIP's own ``SimpleTokenizer`` over ``vocabulary``, loaded from its file: that module is pure Python
    (ftfy, regex), while the ``clip`` package's ``__init__`` imports torch, which a runtime without torch lacks."""
    spec = importlib.util.spec_from_file_location("lang_seg_clip_simple_tokenizer", _clip_folder() / "simple_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError) as exc:
        raise LangSegError(_NO_CLIP.format(exc)) from None
    return module.SimpleTokenizer(vocabulary)


def special_tokens(vocabulary: Optional[str] = None) -> tuple:
    """CLIP's start- and end-of-text ids (49406, 49407 in its vocabulary)."""
    bpe = _bpe(str(vocabulary or clip_vocabulary()))
    return bpe.encoder[START], bpe.encoder[END]


def token_ids(labels: Sequence[str], context_length: int = CONTEXT_LENGTH, vocabulary: Optional[str] = None) -> np.ndarray:
    """CLIP token ids ``(L, context_length)`` int64, as ``clip.tokenize`` gives them, without torch: the start
    token, the label's byte-pair codes, the end token, zeros after it; an over-long label is cut to the context
    (its last kept token becomes the end token) with a warning. ``vocabulary``: CLIP's file (default: the
    installed ``clip`` package's; an export folder ships its own copy)."""
    labels = check_labels(labels, unique=False)
    bpe = _bpe(str(vocabulary or clip_vocabulary()))
    start, end = special_tokens(vocabulary)
    ids = np.zeros((len(labels), context_length), np.int64)
    for row, label in enumerate(labels):
        tokens = [start] + bpe.encode(label) + [end]
        if len(tokens) > context_length:
            warnings.warn(f"label {label[:40]!r}... is longer than CLIP's {context_length}-token context: truncated",
                          stacklevel=2)
            tokens = tokens[: context_length - 1] + [end]
        ids[row, : len(tokens)] = tokens
    return ids


def tokenize(labels: Sequence[str], context_length: int = CONTEXT_LENGTH):
    """``token_ids`` as a torch tensor (what the torch net embeds)."""
    import torch

    return torch.from_numpy(token_ids(labels, context_length))


def check_context(labels: Sequence[str], context_length: int = CONTEXT_LENGTH) -> None:
    """Every label fits CLIP's context (clip refuses a longer one unless truncating): else one line naming it."""
    bpe = _bpe(str(clip_vocabulary()))
    for label in labels:
        if len(bpe.encode(label)) + 2 > context_length:  # with the start and end tokens
            shown = label if len(label) <= 40 else label[:37] + "..."
            raise LangSegError(f"label {shown!r} is longer than CLIP's {context_length}-token context: "
                               "shorten it")
