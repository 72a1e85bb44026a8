"""How the browser demo shows a label map: colours, each label's share, the legend, the PNG download.

Colours are ``lang_seg.images.palette()`` (the VOC colour map of upstream's demo and of the palette
PNGs), so the page, the download and ``test_lseg.py``'s files agree.
"""
from __future__ import annotations

import html
import io
from typing import List, Sequence, Tuple

import numpy as np

from lang_seg.images import palette

PALETTE_SIZE = 256


def colours(n: int) -> np.ndarray:
    """``(max(n, 256), 3)`` uint8: the palette, extended past 256 ids by the same bit-interleaving
    rule (the palette itself stops at 256 colours; the page allows 500 labels)."""
    base = palette()
    if n <= PALETTE_SIZE:
        return base
    ids = np.arange(n)
    extended = np.zeros((n, 3), np.int64)
    code = ids.copy()
    for bit in range(8):  # three bits of the id per round, most significant colour bits first
        for channel in range(3):
            extended[:, channel] |= ((code >> channel) & 1) << (7 - bit)
        code >>= 3
    extended = extended.astype(np.uint8)
    return extended


def colour_mask(label_map: np.ndarray, n_labels: int) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: each pixel in its label's colour."""
    return colours(n_labels)[label_map]


def label_shares(label_map: np.ndarray, labels: Sequence[str]) -> List[Tuple[int, str, float]]:
    """``(id, label, share of pixels)`` for every label, in the label set's order."""
    counts = np.bincount(np.asarray(label_map).ravel(), minlength=len(labels))
    total = max(1, int(counts.sum()))
    return [(i, label, float(counts[i]) / total) for i, label in enumerate(labels)]


def percent(share: float) -> str:
    """``'12.3 %'``; a share above 0 that would round to 0.0 reads ``'<0.1 %'``."""
    return "<0.1 %" if 0 < share < 0.0005 else f"{share * 100:.1f} %"


def legend_html(label_map: np.ndarray, labels: Sequence[str]) -> str:
    """The labels present, largest first, each with its colour and share; then the labels not found.
    Labels are the user's text: escaped."""
    table = colours(len(labels))
    shares = label_shares(label_map, labels)
    present = sorted((s for s in shares if s[2] > 0), key=lambda s: -s[2])
    rows = "".join(
        f'<li class="lseg-legend-item"><span class="lseg-swatch" style="background:rgb{tuple(int(c) for c in table[i])}">'
        f'</span><span class="lseg-label">{html.escape(label)}</span>'
        f'<span class="lseg-share">{percent(share)}</span></li>'
        for i, label, share in present
    )
    absent = [html.escape(label) for _, label, share in shares if share == 0]
    missing = f'<p class="lseg-absent">not found (0 %): {", ".join(absent)}</p>' if absent else ""
    return f'<div class="lseg-legend"><ul>{rows}</ul>{missing}</div>'


LEGEND_CSS = """<style>
.lseg-legend ul {list-style: none; padding: 0; margin: 0; columns: 2 14em;}
.lseg-legend-item {display: flex; align-items: center; gap: .5em; padding: .1em 0; break-inside: avoid;}
.lseg-swatch {width: 1.1em; height: 1.1em; border-radius: .2em; border: 1px solid #8884; flex: none;}
.lseg-label {flex: 1;}
.lseg-share {font-variant-numeric: tabular-nums; color: #555;}
.lseg-absent {color: #777; font-size: .85em; margin-top: .4em;}
</style>"""


def label_map_png(label_map: np.ndarray, n_labels: int) -> bytes:
    """The label map as PNG bytes, pixel value = label id: a palette PNG with the page's colours, or
    16-bit greyscale past 256 labels (a palette holds 256 entries)."""
    from PIL import Image

    label_map = np.asarray(label_map)
    buffer = io.BytesIO()
    if n_labels <= PALETTE_SIZE:
        im = Image.fromarray(label_map.astype(np.uint8), mode="P")
        im.putpalette(palette().flatten().tolist())
    else:
        im = Image.fromarray(label_map.astype(np.uint16))
    im.save(buffer, format="PNG")
    return buffer.getvalue()
