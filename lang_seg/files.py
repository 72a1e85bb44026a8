"""One way to write a file: never half-written, durable once written, with the usual permissions.

Every writer of the project (checkpoints of both frameworks, label maps, logs,
Lightning's checkpoint plugin) goes through ``atomic_write``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def umask_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp)`` on a temporary name in ``path``'s folder, flush it to disk, then rename it over ``path``.

    A crash, a full disk or ``kill -9`` at any point leaves either the old file or the
    new one under ``path``, never a part; the temporary file is removed on error.
    ``suffix``: the temporary name's ending, for writers that insist on one (MindSpore
    wants ``.ckpt``). The file gets ``umask_mode()`` whatever the writer set (``mkstemp``
    makes 0600, MindSpore's ``save_checkpoint`` 0400).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, umask_mode())
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:
        _fsync(path.parent, directory=True)  # the rename itself
    except OSError:  # some file systems cannot fsync a folder; the data is already on disk
        pass
