"""Label lists shipped with the package (``ade20k_objectInfo150.txt``: ADE20K's 150 classes, upstream's file)."""
from pathlib import Path

from lang_seg.checkout import same_package

same_package(__name__)  # upstream's top-level spelling in a checkout: this package under its installed name

LABEL_DIR = Path(__file__).resolve().parent
