"""The project's layers, bottom to top, as the README's table lists them (one source for the table's test).

A module may import modules of its own layer or of layers below, never above, and
the import graph (lazy imports inside functions included) has no circle.
Entries name a module or a package prefix; the most specific entry wins.
"""
LAYERS = (
    ("facts", ("lang_seg.errors", "lang_seg.config", "lang_seg.names", "lang_seg.files", "lang_seg.labels",
               "lang_seg.images", "lang_seg.metrics", "lang_seg.fewshot", "lang_seg.weights", "lang_seg.checkout",
               "lang_seg.label_files", "lang_seg.configs")),
    ("nets", ("lang_seg.modules.models", "lang_seg.modules.models_ms")),
    ("library", ("lang_seg", "lang_seg.api", "lang_seg.model", "lang_seg.evaluate", "lang_seg.checkpoint",
                 "lang_seg.checkpoint_ms", "lang_seg.safe_load", "lang_seg.backends", "lang_seg.export",
                 "lang_seg.export.layout", "lang_seg.export.runtime")),
    ("Lightning shell", ("lang_seg.modules", "lang_seg.data")),
    ("commands", ("lang_seg.commands", "lang_seg.export.command", "lang_seg.export.__main__",
                  "lang_seg.export.onnx_files", "lang_seg.export.mindir_files", "train_lseg", "test_lseg",
                  "train_lseg_zs", "test_lseg_zs", "prepare_ade20k")),
    ("tools", ("lang_seg.tools",)),
)
# folders of the package, and where a checkout keeps them (lang_seg/checkout.py)
PACKAGES = {"lang_seg": "lang_seg", "lang_seg.modules": "modules", "lang_seg.data": "data",
            "lang_seg.label_files": "label_files", "lang_seg.configs": "configs"}
SCRIPTS = ("train_lseg", "test_lseg", "train_lseg_zs", "test_lseg_zs", "prepare_ade20k")


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > best_len:
                best, best_len = index, len(entry)
    if best is None:
        raise KeyError(f"module {module} is in no layer: add it to tests/layers.py and the README's table")
    return best
