"""One way to write a file: never half-written, durable once written, with the usual permissions.

Every writer of the project (checkpoints of both frameworks, label maps, logs,
Lightning's checkpoint plugin) goes through ``atomic_write``; a folder of outputs
(an export) through ``atomic_folder``.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

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


def append_log(path, text: str, record: dict) -> None:
    """The evaluation commands' logs: ``text`` appended to upstream's text log ``path`` (read and rewritten
    whole through ``atomic_write``, so never half-written) and ``record`` as the JSON file beside it."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    earlier = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write(path, lambda tmp: Path(tmp).write_text(earlier + text, encoding="utf-8"))


def _folder_error(path, exc: OSError) -> LangSegError:
    fix = _FIXES.get(exc.errno, "check the path")
    return LangSegError(f"cannot write {path} ({exc.strerror or exc}): {fix}; nothing was written")


@contextlib.contextmanager
def atomic_folder(path) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; when the block ends without error it takes ``path``'s
    place (an earlier folder there is removed only then), otherwise it is removed and ``path`` is unchanged.

    The caller decides whether an existing ``path`` may be replaced. Files are flushed to disk before the
    rename; the folder gets the usual permissions (``mkdtemp`` makes 0700). A crash between moving an
    earlier folder aside and renaming the new one leaves the earlier one as ``.<name>.old-*/<name>``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise _folder_error(path, exc) from None
    aside = None
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync(file)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.rename(path, aside / path.name)
        os.rename(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None and not path.exists() and (aside / path.name).exists():
            os.rename(aside / path.name, path)  # put the earlier folder back
        if isinstance(exc, OSError):
            raise _folder_error(path, exc) from None
        raise
    finally:
        if aside is not None and path.exists():  # a folder stands at path again: the one aside may go
            shutil.rmtree(aside, ignore_errors=True)
    try:
        _fsync(path.parent, directory=True)
    except OSError:
        pass
