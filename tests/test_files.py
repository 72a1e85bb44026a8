"""The one atomic write (``lang_seg.files.atomic_write``): umask permissions, flushed to disk before the
rename, nothing left behind on failure, system errors as one line."""
import errno
import os
import stat

import pytest

from lang_seg import LangSegError
from lang_seg.files import atomic_write


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_permissions_follow_the_umask_whatever_the_writer_set(tmp_path, umask_027):
    def read_only_writer(tmp):  # as MindSpore's save_checkpoint (0400) or mkstemp (0600) leave a file
        with open(tmp, "w") as f:
            f.write("x")
        os.chmod(tmp, 0o400)

    atomic_write(tmp_path / "a.ckpt", read_only_writer)
    assert stat.S_IMODE((tmp_path / "a.ckpt").stat().st_mode) == 0o640


def test_the_file_and_its_folder_are_flushed_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b))) or replace(a, b))
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: open(tmp, "w").write("data"))
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".out.txt.")) and events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)  # the folder: the rename itself is durable
    assert target.read_text() == "data"


@pytest.mark.parametrize("failure, raised", [(ValueError("bad data"), ValueError),
                                             (OSError(errno.ENOSPC, "No space left on device"), LangSegError)])
def test_a_failed_write_keeps_the_earlier_file_and_leaves_nothing(tmp_path, failure, raised):
    target = tmp_path / "labels.png"
    target.write_bytes(b"earlier")

    def failing(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise failure

    with pytest.raises(raised) as caught:
        atomic_write(target, failing)
    if raised is LangSegError:
        assert str(caught.value) == (f"cannot write {target} (No space left on device): free some disk space and "
                                     "run again; any earlier file of that name is unchanged")
    assert target.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["labels.png"]


def test_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LangSegError, match=r"cannot write .*file/out.png \(File exists\): a file stands where a "
                                           r"folder of the path should be: choose another path; any earlier"):
        atomic_write(tmp_path / "file" / "out.png", lambda tmp: None)
