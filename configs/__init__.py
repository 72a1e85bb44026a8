"""Training configs for ``train_lseg.py fit --config`` (LightningCLI YAML), shipped with the package."""
from pathlib import Path

from lang_seg.checkout import same_package

same_package(__name__)  # upstream's top-level spelling in a checkout: this package under its installed name

CONFIG_DIR = Path(__file__).resolve().parent
