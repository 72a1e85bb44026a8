"""The Lightning shell of lang-seg (the LightningModules, trainer set-up, callbacks, the MindSpore bridge)
and, in ``models``/``models_ms``, the networks on each backend."""
from lang_seg.checkout import same_package

same_package(__name__)  # upstream's top-level spelling in a checkout: this package under its installed name
