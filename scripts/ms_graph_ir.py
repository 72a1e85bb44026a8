"""What a compiled MindSpore CPU graph holds, read from its IR (``MS_DEV_SAVE_GRAPHS=1`` with
``MS_DEV_DUMP_IR_PASSES=graph_build`` writes one ``graph_build_<n>_<id>.ir`` per compiled graph):

- ``index_tables``: the per-element index tables its kernels build when the graph is built and keep for its
  life (measured on MindSpore 2.10, ``modules/models_ms/table_free.py``): 16 bytes per output element for a
  ``Div`` and for any other binary operation whose inputs differ in shape, 8 for a ``Transpose``;
- ``liveness``: the tensors alive at the graph's peak when each is freed after its last use in the IR's order
  (MindSpore's CPU runtime frees a kernel's inputs once their last reader has run), i.e. what the memory pool
  must hold at least, with the largest of them named.

    python scripts/ms_graph_ir.py graph_build_2_0400.ir

Source lines are the ones MindSpore records: a helper called from several places may name its first caller.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

NODE = re.compile(r"^\s+%(\d+)\([^)]*\) = (?:PrimFunc_)?([\w.]+)\((.*)$")
REF = re.compile(r"%(\d+)\b")
TENSOR = re.compile(r"Tensor\[(\w+)\], \(([\d, ]*)\)")
SOURCE = re.compile(r"^(.*?:\d+), [\d~]+/\s*(.*?)/?$")  # "path:line, col~col/    code/"
BYTES = {"Float32": 4, "Float16": 2, "BFloat16": 2, "Float64": 8, "Int32": 4, "Int64": 8, "Int16": 2, "Int8": 1,
         "UInt8": 1, "Bool": 1}
# operations whose output is a view of (or bookkeeping about) their input on CPU: no memory of their own
ALIASES = {"Reshape", "ExpandDims", "Squeeze", "Flatten", "TupleGetItem", "Depend", "Load", "MakeTuple",
           "UpdateState", "Return", "make_tuple", "tuple_getitem", "depend"}
BINARY = {"Mul", "Add", "Sub", "RealDiv", "Pow", "Maximum", "Minimum", "MaskedFill", "Select", "Equal", "NotEqual",
          "Less", "LessEqual", "Greater", "GreaterEqual", "DivNoNan", "SquaredDifference", "LogicalAnd", "LogicalOr",
          "FloorDiv", "Mod", "Atan2", "MulNoNan", "Xdivy", "Xlogy"}


@dataclass
class Node:
    id: int
    op: str
    inputs: List[int]
    in_shapes: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    out_shapes: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    scope: str = ""
    source: str = ""

    @property
    def out_bytes(self) -> int:
        return sum(BYTES.get(dtype, 4) * numel(shape) for dtype, shape in self.out_shapes)

    @property
    def where(self) -> str:
        return self.source or self.scope


def numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _tensors(text: str):
    return [(dtype, tuple(int(d) for d in dims.split(",") if d.strip())) for dtype, dims in TENSOR.findall(text)]


def parse(path: str, project: str = "") -> List[Node]:
    """The nodes of one IR file, in its order; ``source``: the deepest line of ``project`` the node comes from."""
    nodes: List[Node] = []
    node = None
    with open(path) as ir:
        for line in ir:
            found = NODE.match(line)
            if found:
                node = Node(int(found[1]), found[2], [int(r) for r in REF.findall(found[3])])
                nodes.append(node)
                continue
            if node is None:
                continue
            text = line.strip()
            if not node.out_shapes and text.startswith(": (") and "->" in text:
                ins, outs = text.split("->", 1)
                node.in_shapes, node.out_shapes = _tensors(ins), _tensors(outs)
            elif text.startswith("# Fullname with scope:") and not node.scope:
                node.scope = text.split("(", 1)[1].rstrip(")")
            elif project and text.startswith("# In file " + project):
                found = SOURCE.match(text[len("# In file " + project):].lstrip("/"))
                if found:
                    node.source = f"{found[1]}  {found[2][:60]}"
    return nodes


def index_tables(nodes: List[Node]) -> List[Tuple[int, Node]]:
    """``(bytes, node)`` for every kernel that keeps per-element index tables, largest first."""
    found = []
    for node in nodes:
        if not node.out_shapes:
            continue
        n = numel(node.out_shapes[0][1])
        shapes = [s for _, s in node.in_shapes[:2]]
        if node.op == "Transpose":
            found.append((8 * n, node))
        elif node.op == "Div" and n > 1:
            found.append((16 * n, node))
        elif node.op in BINARY and len(shapes) == 2 and min(map(numel, shapes)) > 1 and shapes[0] != shapes[1]:
            found.append((16 * n, node))
    return sorted(found, key=lambda item: -item[0])


def reads(node: Node) -> List[int]:
    """The inputs whose memory a node reads: ``UpdateState`` and ``Depend``'s dependency only order the graph."""
    if node.op == "UpdateState":
        return []
    if node.op in ("Depend", "depend"):
        return node.inputs[:1]
    return node.inputs


def liveness(nodes: List[Node]) -> Tuple[int, List[Node]]:
    """``(peak bytes, tensors alive at the peak, largest first)`` with every output freed after its last reader
    (views extend the life of what they view; parameters and constants are not counted)."""
    base: Dict[int, int] = {}  # node id -> id of the node that owns the memory
    last_use: Dict[int, int] = {}
    owners = {node.id: node for node in nodes}
    for step, node in enumerate(nodes):
        if node.op in ALIASES and node.inputs and node.inputs[0] in owners:
            base[node.id] = base.get(node.inputs[0], node.inputs[0])
        for ref in reads(node):
            if ref in owners:
                last_use[base.get(ref, ref)] = step
    live: Dict[int, Node] = {}
    total = peak = 0
    at_peak: List[Node] = []
    for step, node in enumerate(nodes):
        if node.op not in ALIASES and node.out_bytes:
            live[node.id] = node
            total += node.out_bytes
            if total > peak:
                peak, at_peak = total, list(live.values())
        for ref in {base.get(r, r) for r in reads(node)}:
            if last_use.get(ref) == step and ref in live:
                total -= live.pop(ref).out_bytes
    return peak, sorted(at_peak, key=lambda n: -n.out_bytes)


def report(path: str, project: str = "", top: int = 12) -> str:
    nodes = parse(path, project)
    tables = index_tables(nodes)
    peak, at_peak = liveness(nodes)
    mb = 2 ** 20
    lines = [f"{path}: {len(nodes)} nodes",
             f"  kernel index tables: {sum(b for b, _ in tables) / mb:.0f} MB in {len(tables)} kernels, largest:"]
    lines += [f"    {b / mb:8.1f} MB  {n.op:<10} {n.out_shapes[0][1]}  {n.where}" for b, n in tables[:top]]
    lines.append(f"  tensors alive at the graph's peak (each freed after its last use): {peak / mb:.0f} MB, largest:")
    lines += [f"    {n.out_bytes / mb:8.1f} MB  {n.op:<16} {n.out_shapes[0][1] if n.out_shapes else ''}  {n.where}"
              for n in at_peak[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(report(name))
