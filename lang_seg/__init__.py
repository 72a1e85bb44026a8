"""LSeg (language-driven semantic segmentation) with a torch reference and a MindSpore compute core."""
from .api import BACKENDS, load_model
from .config import BACKBONES, NetOptions
from .errors import LangSegError

__version__ = "0.1.0"
__all__ = ["load_model", "BACKENDS", "BACKBONES", "NetOptions", "LangSegError", "__version__"]
