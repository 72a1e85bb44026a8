"""The suite's warning configuration (``setup.cfg``): a deprecated call fails a test, whoever makes it, unless it is
one of the third-party deprecations named there, each by its message or its module."""
import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEPRECATED_CALLS = '''
import warnings

def old():
    warnings.warn("old() is deprecated", DeprecationWarning, stacklevel=2)

def test_own_deprecated_call():
    old()

def test_pending_deprecation():
    warnings.warn("soon", PendingDeprecationWarning)
'''


def test_deprecated_calls_fail_the_suite(tmp_path):
    (tmp_path / "test_calls.py").write_text(DEPRECATED_CALLS)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "setup.cfg"),
                          "--rootdir", str(tmp_path), str(tmp_path / "test_calls.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout
    assert "2 failed" in run.stdout and "DeprecationWarning: old() is deprecated" in run.stdout


def test_ignored_deprecations_are_named():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    filters = [line.strip() for line in config["tool:pytest"]["filterwarnings"].splitlines()
               if line.strip() and not line.strip().startswith("#")]
    assert filters[:2] == ["error::DeprecationWarning", "error::PendingDeprecationWarning"]
    for entry in filters[2:]:
        action, message, category, *module = entry.split(":") + [""]
        assert action == "ignore" and (message or module[0]), f"{entry}: name the message or the module it comes from"
