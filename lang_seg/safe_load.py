"""Torch checkpoint files read without running code from them.

``torch.load`` unpickles: a crafted ``.ckpt`` can call any function while it
loads. Files are read with torch's weights-only unpickler (tensors, numbers,
strings, containers), plus exactly the classes lang-seg checkpoints hold
(``SAFE_GLOBALS``); anything else stops with one line naming it and the opt-in
(``--trust-checkpoint`` on the commands, ``trust=True`` in Python) for files
whose source the user trusts. The file's kind comes from its first bytes, so a
truncated torch file is reported as one, not as "not a checkpoint".
"""
from __future__ import annotations

import contextlib
import importlib
import re
from pathlib import Path
from typing import Iterable, List

from .errors import LangSegError

# The only non-primitive objects in lang-seg checkpoints, with why. This project's own files
# (Lightning 2.x) hold none; upstream's were written by Lightning 1.3/1.4, which keys each
# callback's state by the callback's class (``callback_hook.py``: ``callback_states[type(callback)]``).
SAFE_GLOBALS = {
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": "upstream's Lightning 1.x callback-state key",
}
TRUST_HINT = "if you trust its source, pass --trust-checkpoint (Python: trust=True)"

ZIP_MAGIC = b"PK\x03\x04"
# torch's legacy (pre-1.6) format opens with a pickled magic number (protocol 2, LONG1 of 10 bytes)
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def file_kind(path) -> str:
    """'torch' (zip format, whole or not), 'torch-legacy', or 'other' (MindSpore's protobuf, or not a checkpoint)."""
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_MAGIC))
    if head.startswith(ZIP_MAGIC):
        return "torch"
    if head == LEGACY_MAGIC:
        return "torch-legacy"
    return "other"


def named_globals(path) -> List[str]:
    """The classes and functions a zip-format file's pickle names beyond torch's own allowed set, read
    statically (nothing runs). Legacy files cannot be scanned: torch's weights-only loader checks them."""
    import torch

    if file_kind(path) != "torch":
        return []
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:
        raise damaged(path, exc) from None


def _allowed(names: Iterable[str], trust: bool = False) -> list:
    """What a weights-only load may unpickle among ``names``: the ``SAFE_GLOBALS`` (with ``trust``, every
    name that imports here), imported only when named (Lightning's import takes seconds)."""
    found = [(_resolve(name), name) for name in names if trust or name in SAFE_GLOBALS]
    return [(obj, name) for obj, name in found if obj is not None]


def refuse(path, name: str) -> LangSegError:
    return LangSegError(f"checkpoint {path} holds {name}, which is not a tensor, number or string and would run "
                        f"code when loaded: refused; {TRUST_HINT}")


def damaged(path, exc: BaseException) -> LangSegError:
    return LangSegError(f"checkpoint {path} is damaged or truncated: torch cannot read it ({type(exc).__name__}: "
                        f"{_first_line(exc)}); copy or download it again")


def _checked_globals(path, trust: bool) -> List[str]:
    names = named_globals(path)
    unsafe = [n for n in names if n not in SAFE_GLOBALS]
    if unsafe and not trust:
        raise refuse(path, unsafe[0])
    return names if file_kind(path) == "torch" else list(SAFE_GLOBALS)


def lightning_weights_only(path, trust: bool = False) -> bool:
    """Check ``path`` for Lightning's own loader (``ckpt_path``: resume, validate), which reads weights-only
    by default: refuse what is not a torch file or would run code, and return the ``weights_only`` to pass
    (False only when trusted). Nothing is added to torch's process-wide allowlist: the loads themselves
    allow what they need (``allowed_globals``, ``lang_seg.modules.checkpoint_io``)."""
    if file_kind(path) == "other":
        raise LangSegError(f"checkpoint {path} is not a torch (Lightning) checkpoint: pass a .ckpt written by "
                           "train_lseg.py (MindSpore files: convert them with python -m lang_seg.commands.convert)")
    _checked_globals(path, trust)
    return not trust


def project_globals() -> list:
    """``SAFE_GLOBALS``, imported, for a weights-only load of a lang-seg checkpoint."""
    return _allowed(SAFE_GLOBALS)


@contextlib.contextmanager
def allowed_globals(path, trust: bool = False):
    """For the one weights-only load inside the block: what torch's loader may unpickle of ``path`` beyond
    its own set (``SAFE_GLOBALS``; with ``trust``, everything the file names). The allowlist is torch's own
    context manager, so nothing is left allowed for any other load once the block ends."""
    import torch

    with torch.serialization.safe_globals(_allowed(_checked_globals(path, trust), trust)):
        yield


def _resolve(name: str):
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception:  # not importable here: unpickling it fails in torch either way
        return None


def load_torch_file(path, trust: bool = False):
    """``torch.load`` on the CPU, weights only unless ``trust``; every failure is one ``LangSegError`` line."""
    import pickle

    import torch

    path = Path(path)
    names = _checked_globals(path, trust)
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_allowed(names)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:  # a legacy file, or a name the static scan could not see
            raise refuse(path, found.group(1)) from None
        raise LangSegError(f"checkpoint {path} is not a plain torch checkpoint ({_first_line(exc)}); {TRUST_HINT}") from None
    except Exception as exc:
        raise damaged(path, exc) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].split(". ")[0][:200] if text else type(exc).__name__
