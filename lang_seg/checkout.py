"""One package, two layouts: a checkout keeps upstream lang-seg's folders, a wheel keeps one top-level name.

In a checkout the Lightning shell (``modules/``), the datasets (``data/``), the label
files (``label_files/``) and the training configs (``configs/``) sit beside
``lang_seg/``, where upstream lays them out; a wheel installs them inside the
package (``lang_seg.modules``, ...: ``package_dir`` in setup.cfg), so that
site-packages gains no generic top-level names. The project imports them as
``lang_seg.modules...`` everywhere. In a checkout, ``CheckoutFinder`` reads those
names from the folders beside the package, and makes upstream's spelling
(``import modules.lseg_module``) give the very same module objects, not a second
copy of every class.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

BESIDE = ("modules", "data", "label_files", "configs")
PACKAGE = "lang_seg"
ROOT = Path(__file__).resolve().parent.parent


def in_checkout() -> bool:
    """True when the folders sit beside the package (a checkout), not inside it (a wheel)."""
    here = Path(__file__).resolve().parent
    return not (here / "modules").is_dir() and (ROOT / "modules" / "__init__.py").is_file()


class _Alias(importlib.abc.Loader):
    """Loads ``modules.X`` as the module object ``lang_seg.modules.X``."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec: keep the module's own


class CheckoutFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        head, _, rest = fullname.partition(".")
        if head == PACKAGE and rest in BESIDE:  # the folder's submodules follow the package's __path__
            folder = ROOT / rest
            return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                          submodule_search_locations=[str(folder)])
        if head in BESIDE and self._is_ours(head):
            return importlib.util.spec_from_loader(fullname, _Alias(f"{PACKAGE}.{fullname}"),
                                                   is_package=(ROOT / fullname.replace(".", "/")).is_dir())
        return None

    @staticmethod
    def _is_ours(head: str) -> bool:
        """Only the checkout's own folder: another project's top-level ``data`` stays its own."""
        spec = importlib.machinery.PathFinder.find_spec(head)
        return spec is not None and spec.origin is not None and Path(spec.origin).resolve().parent == ROOT / head


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once, in a checkout only."""
    if in_checkout() and not any(isinstance(f, CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, CheckoutFinder())


def same_package(name: str) -> None:
    """Called by each folder's ``__init__`` with its ``__name__``: imported by upstream's top-level spelling
    before any ``lang_seg`` import, the folder becomes ``lang_seg.<name>`` (one copy of each module)."""
    if name in BESIDE:
        install()
        sys.modules[name] = importlib.import_module(f"{PACKAGE}.{name}")
