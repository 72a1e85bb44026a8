"""``python -m lang_seg.export``: see ``lang_seg.export.command``."""
import sys

from .command import main

sys.exit(main())
