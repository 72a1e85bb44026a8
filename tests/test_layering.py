"""The layering the README's table states: no import from a lower layer to a higher one, no import circle."""
from __future__ import annotations

import ast
from pathlib import Path

from .layers import LAYERS, PACKAGES, SCRIPTS, layer_of

ROOT = Path(__file__).resolve().parent.parent


def project_modules():
    """``{module name: path}`` of every project source file."""
    found = {name: ROOT / f"{name}.py" for name in SCRIPTS}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if package == "lang_seg" and parts[0] in {f for f in PACKAGES.values()}:
                continue
            name = ".".join((package,) + (parts[:-1] if parts[-1] == "__init__" else parts))
            found[name] = path
    return found


def imports_of(name: str, path: Path, modules) -> set:
    """Project modules ``name`` imports anywhere in its file (lazy imports inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph():
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    for name in project_modules():
        layer_of(name)  # raises for a module left out of the table


def test_no_import_reaches_up_a_layer():
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in sorted(import_graph().items()) for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def find_cycle(graph):
    """One import circle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_checks_catch_a_circle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("lang_seg.modules.models.lseg_net") < layer_of("lang_seg.api") < layer_of("lang_seg.modules.lseg_module")
    assert layer_of("lang_seg.names") == 0 and layer_of("lang_seg.tools.bench") == len(LAYERS) - 1


def test_the_architecture_page_lists_the_layers():
    page = (ROOT / "docs" / "architecture.md").read_text()
    table = page[page.index("| layer |"):].split("\n\n")[0]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert len(rows) == len(LAYERS)
    # the README lists the top layer first, as one reads a house from the roof down
    for row, (title, entries) in zip(rows, reversed(LAYERS)):
        assert title in row, row
        for entry in entries:
            shown = f"{entry}.py" if entry in SCRIPTS else entry
            folder = PACKAGES.get(entry, entry.replace(".", "/"))
            assert f"`{shown}" in row or f"`{folder}/" in row or entry.rpartition(".")[2] in row, (entry, row)


def test_the_names_map_and_the_mindspore_nets_need_no_torch():
    graph = import_graph()
    for name, path in project_modules().items():
        if name in ("lang_seg.names", "lang_seg.files", "lang_seg.config", "lang_seg.errors") or \
                name.startswith("lang_seg.modules.models_ms"):
            tree = ast.parse(path.read_text())
            roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
            roots |= {node.module.split(".")[0] for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and node.module and not node.level}
            assert not roots & {"torch", "pytorch_lightning", "timm", "clip"}, (name, roots)
    assert graph["lang_seg.names"] <= {"lang_seg.config", "lang_seg.errors"}
