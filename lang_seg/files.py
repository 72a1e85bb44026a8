"""One way to write a file: never half-written, durable once written, with the usual permissions.

Every writer of the project (checkpoints of both frameworks, label maps, logs,
Lightning's checkpoint plugin) goes through ``atomic_write``.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import LangSegError

_FIXES = {
    errno.ENOSPC: "free some disk space and run again",
    errno.EDQUOT: "free some disk space and run again",
    errno.EACCES: "the folder is not writable: choose another one",
    errno.EPERM: "the folder is not writable: choose another one",
    errno.EROFS: "the folder is on a read-only file system: choose another one",
    errno.EEXIST: "a file stands where a folder of the path should be: choose another path",
    errno.ENOTDIR: "a file stands where a folder of the path should be: choose another path",
}


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
    makes 0600, MindSpore's ``save_checkpoint`` 0400). A system error (full disk, folder
    not writable) becomes one ``LangSegError`` line naming the file and the fix.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, umask_mode())
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError):
            fix = _FIXES.get(exc.errno, "check the path")
            raise LangSegError(f"cannot write {path} ({exc.strerror or exc}): {fix}; "
                               "any earlier file of that name is unchanged") from None
        raise
    try:
        _fsync(path.parent, directory=True)  # the rename itself
    except OSError:  # some file systems cannot fsync a folder; the data is already on disk
        pass


def write_json(path, data, indent: int = 2) -> None:
    """``data`` as JSON at ``path``, through ``atomic_write`` (the commands' ``--json`` reports)."""
    import json

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=indent)))
