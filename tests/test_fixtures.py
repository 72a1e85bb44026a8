"""tests/fixtures/ is what its README says: the listed files with the listed SHA-256s, written by the
generator script from upstream lang-seg's code."""
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import FIXTURES


def listed():
    text = (FIXTURES / "README.md").read_text()
    block = text.split("## SHA-256", 1)[1]
    return dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", block, re.M))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_readme_lists_every_fixture_with_its_sha256():
    digests = listed()
    files = sorted(p.name for p in FIXTURES.glob("upstream_*"))
    assert sorted(digests) == files and len(files) == 7 + 8  # make_upstream_fixtures.py, make_upstream_zs_fixtures.py
    for name, digest in digests.items():
        assert sha256(FIXTURES / name) == digest, f"{name} differs from the SHA-256 its README lists"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LANGSEG_UPSTREAM"), reason="LANGSEG_UPSTREAM names no lang-seg checkout")
def test_generator_rewrites_the_same_files(tmp_path):
    for script in ("make_upstream_fixtures.py", "make_upstream_zs_fixtures.py"):  # the second reads the first's files
        run = subprocess.run([sys.executable, str(FIXTURES / script), "--upstream", os.environ["LANGSEG_UPSTREAM"],
                              "--out", str(tmp_path)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
    assert {p.name: sha256(p) for p in tmp_path.glob("upstream_*")} == listed()
