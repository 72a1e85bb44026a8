"""LSeg (language-driven semantic segmentation) with a torch reference and a MindSpore compute core."""
from . import checkout
from .config import BACKBONES, BACKENDS, NetOptions
from .errors import LangSegError

__version__ = "0.1.0"

checkout.install()  # in a checkout: lang_seg.modules, lang_seg.data, ... are the folders beside this one
__all__ = ["load_model", "BACKENDS", "BACKBONES", "NetOptions", "LangSegError", "__version__"]


def __getattr__(name):
    # Imported on first use, so that ``import lang_seg.config`` (what the nets do) stays at the bottom layer.
    if name == "load_model":
        from .api import load_model

        return load_model
    raise AttributeError(f"module 'lang_seg' has no attribute {name!r}")
