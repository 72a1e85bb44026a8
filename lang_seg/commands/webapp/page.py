"""The browser demo's page: pick a picture, type labels, see the segmentation, download the label map.

Streamlit runs this script once per interaction and per browser session;
``lseg-app`` starts it with ``-- --weights CKPT [--backend B] [--max-side N]``.
Models live in ``lang_seg.commands.app_logic.model_store`` (once per process and backend),
results in ``st.session_state`` (one per browser session). Any failure is shown
as ``error: ...`` and the page keeps serving.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

import streamlit as st

from lang_seg.commands import app_logic, app_view
from lang_seg.errors import LangSegError

SCALES = {"single scale (fast)": False, "six scales + flip (upstream's evaluation)": True}
BACKEND_NAMES = {"torch": "torch", "mindspore": "MindSpore", "both": "both, side by side"}
MAX_LABEL_CHARS = 50_000


def page_options(argv):
    parser = argparse.ArgumentParser(prog="lang_seg.commands.webapp.page")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--backend", choices=app_logic.BACKEND_CHOICES, default="torch")
    parser.add_argument("--max-side", type=int, default=app_logic.MAX_SIDE)
    return parser.parse_args(argv)


def use_preset():
    chosen = st.session_state.get("preset")
    if chosen:
        st.session_state["labels"] = app_logic.presets()[chosen]


def compute(opts, upload, example, text, backend, multi_scale):
    """``{'result': Segmentation, 'name': picture name, 'views': [(run, mask, legend, png)]}`` or
    ``{'error': one line}``."""
    try:
        labels = app_logic.parse_label_text(text)
        if upload is not None:
            name, data = upload.name, upload.getvalue()
        elif example:
            name, data = example, app_logic.example_pictures()[example].read_bytes()
        else:
            raise LangSegError("no picture: upload one or pick a bundled one")
        rgb = app_logic.read_picture(data, max_side=opts.max_side, name=name)
        bar = st.progress(0.0, text="starting")
        try:
            with st.spinner("segmenting", show_time=True):
                result = app_logic.segment_picture(app_logic.model_store(opts.weights), rgb, labels, backend,
                                                   multi_scale, progress=lambda f, step: bar.progress(f, text=step))
        finally:
            bar.empty()
        n = len(labels)  # each run's mask, legend and PNG, made once rather than on every rerun of the page
        views = [(run, app_view.colour_mask(run.label_map, n), app_view.legend_html(run.label_map, labels),
                  app_view.label_map_png(run.label_map, n)) for run in result.runs]
        return {"result": result, "name": name, "views": views}
    except LangSegError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a bug or exhausted memory: one line here, the traceback in the server's log
        traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0]
        return {"error": f"the segmentation failed ({type(exc).__name__}: {first}); the server log has the details"}


def show(outcome):
    if outcome is None:
        st.info("Upload a picture or pick a bundled one, type labels, then press **Segment**.")
        return
    if "error" in outcome:
        st.error(f"error: {outcome['error']}")
        return
    seg, name = outcome["result"], outcome["name"]
    height, width = seg.rgb.shape[:2]
    # picture | mask | legend for one backend; picture | mask and legend of each for both
    columns = st.columns(3)
    columns[0].image(seg.rgb, caption=f"{name} ({width}x{height})", width="stretch")
    for i, (run, mask, legend, png) in enumerate(outcome["views"]):
        mask_at, legend_at = (columns[1], columns[2]) if len(seg.runs) == 1 else (columns[1 + i], columns[1 + i])
        mask_at.image(mask, width="stretch", caption=f"segmentation, {BACKEND_NAMES[run.backend]}: {run.seconds:.2f} s")
        with legend_at:
            st.html(app_view.LEGEND_CSS + legend)
            st.download_button(f"Download the label map ({run.backend}, PNG)", data=png, on_click="ignore",
                               file_name=f"{Path(name).stem}_labels_{run.backend}.png", mime="image/png",
                               key=f"download-{run.backend}")
    how = "six scales with flip" if seg.multi_scale else "one scale"
    summary = f"{len(seg.labels)} labels, {how}: " + ", ".join(
        f"{BACKEND_NAMES[run.backend]} {run.seconds:.2f} s" for run in seg.runs)
    if seg.agreement is not None:
        summary += f"; the backends agree on **{seg.agreement * 100:.3f} %** of pixels"
    st.markdown(summary)


def main(argv):
    opts = page_options(argv)
    st.set_page_config(page_title="LSeg demo", layout="wide")
    st.html("<style>[data-testid='stMainBlockContainer'] {padding-top: 2.5rem;}</style>")
    st.header("LSeg: segment a picture into the labels you type")
    st.caption(f"Language-driven semantic segmentation, torch and MindSpore backends · weights: "
               f"`{Path(opts.weights).name}` · pictures up to {opts.max_side} px on the long side")
    with st.sidebar:
        backend = st.radio("Backend", list(BACKEND_NAMES), format_func=BACKEND_NAMES.get,
                           index=list(BACKEND_NAMES).index(opts.backend), key="backend")
        multi_scale = SCALES[st.radio("Scales", list(SCALES), key="scales")]
        st.caption("The first MindSpore run compiles its graphs (seconds to a minute).")
    st.session_state.setdefault("labels", next(iter(app_logic.presets().values())))
    left, right = st.columns(2)
    with left:
        upload = st.file_uploader("Picture (JPEG, PNG, BMP, TIFF, WebP, ...)", key="upload")
        example = st.selectbox("or a bundled picture", list(app_logic.example_pictures()), key="example",
                               disabled=upload is not None)
    with right:
        st.selectbox("Label preset", list(app_logic.presets()), index=None, key="preset", on_change=use_preset,
                     placeholder="choose a preset, or type below")
        text = st.text_area("Labels, comma-separated", key="labels", max_chars=MAX_LABEL_CHARS, height=100)
        run = st.button("Segment", type="primary", key="segment")
    if run:
        st.session_state["outcome"] = compute(opts, upload, example, text, backend, multi_scale)
    show(st.session_state.get("outcome"))


if __name__ == "__main__":
    main(sys.argv[1:])
