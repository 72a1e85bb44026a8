"""Label lists shipped with the package (``ade20k_objectInfo150.txt``: ADE20K's 150 classes, upstream's file)."""
from pathlib import Path

LABEL_DIR = Path(__file__).resolve().parent
