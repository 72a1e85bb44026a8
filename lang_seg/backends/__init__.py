"""The two compute backends behind ``lang_seg.load_model``."""
