"""The project's layers, bottom to top, as the README's table lists them (one source for the table's test).

A module may import modules of its own layer or of layers below, never above, and
the import graph (lazy imports inside functions included) has no circle.
Entries name a module or a package prefix; the most specific entry wins.
"""
LAYERS = (
    ("facts", ("lang_seg.errors", "lang_seg.config", "lang_seg.names", "lang_seg.files", "lang_seg.labels",
               "lang_seg.images", "lang_seg.metrics", "lang_seg.weights", "label_files")),
    ("nets", ("modules.models", "modules.models_ms")),
    ("backends and checkpoint I/O", ("lang_seg", "lang_seg.api", "lang_seg.model", "lang_seg.evaluate",
                                     "lang_seg.checkpoint", "lang_seg.checkpoint_ms", "lang_seg.safe_load",
                                     "lang_seg.backends")),
    ("Lightning shell", ("modules", "lang_seg.bridge", "lang_seg.handoff", "data")),
    ("commands", ("lang_seg.convert", "lang_seg.parity", "lang_seg.bench", "lang_seg.bench_commands",
                  "lang_seg.bench_ddp", "lang_seg.demo",
                  "lang_seg.app", "lang_seg.app_logic", "lang_seg.app_view", "lang_seg.webapp",
                  "train_lseg", "test_lseg", "prepare_ade20k", "data.bundled")),
)
PACKAGES = ("lang_seg", "modules", "data", "label_files")
SCRIPTS = ("train_lseg", "test_lseg", "prepare_ade20k")


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > best_len:
                best, best_len = index, len(entry)
    if best is None:
        raise KeyError(f"module {module} is in no layer: add it to tests/layers.py and the README's table")
    return best
