"""Where the MindSpore training command's memory goes: one ``train_lseg.py --backend mindspore`` run, accounted.

    python scripts/ms_memory_account.py [--backbone clip_vitb32_384] [--crop_size 480] [--batch_size 1]
                                        [--max_steps 2] [--ir] [--json FILE] [-- more train_lseg.py flags]

The command runs as users run it (``train_lseg.main``: bundled data, 150 labels, random weights) in a child
process under ``scripts/malloc_account.c`` (LD_PRELOAD), which logs every heap block of 1 MiB or more with the
stack that asked for it. MindSpore 2.10 keeps no memory statistics on CPU (``mindspore.runtime.memory_stats()``
is empty there; ``MS_ALLOC_CONF=memory_tracker:True`` records tasks but no blocks), so that log is the account.
Each block goes to one line by its stack: MindSpore's memory pool (the blocks its CPU pool mallocs: the compiled
graphs' tensors), the CPU kernels' index tables (vectors grown inside ``libmindspore_ops_cpu``: Transpose,
broadcasting and dividing kernels, ``modules/models_ms/table_free.py``), oneDNN primitives' scratchpads,
numpy-allocated buffers (MindSpore's weights and optimizer state are initialised from numpy and keep its
memory), torch tensors (the Lightning module's own net), Python's arenas; resident bytes are read from
``/proc/self/pagemap``, so a pool block reserved but untouched counts nothing. What no large block explains is
split into the libraries' pages (``RssFile``) and the rest: small allocations (the compiled graphs' IR and
kernel objects, Python objects) and memory the C allocator keeps.

The child marks each phase of the command in the log (the torch module, the MindSpore net, the label set's
text features, each validation and training batch, each checkpoint) and samples its resident memory every
0.2 s into the same log, so the table gives each line at the end of each phase and at the process's peak.
``--limit_mb`` stops the command past that resident memory, or when the machine has under 1 GB available, and
still prints the account of the phases it reached. ``--ir`` also dumps every compiled graph's final IR and lists, per graph, the kernels that keep index tables
and the tensors alive at the graph's peak (``scripts/ms_graph_ir.py``).
"""
from __future__ import annotations

import argparse
import bisect
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM = os.path.join(ROOT, "scripts", "malloc_account.c")
MB = 2 ** 20
LINES = (
    ("pool", "MindSpore memory pool (compiled graphs' tensors)"),
    ("tables", "CPU kernels' index tables (Transpose, broadcast, Div)"),
    ("onednn", "oneDNN primitives' scratchpads"),
    ("numpy", "numpy-allocated (MindSpore weights, optimizer state, batches)"),
    ("torch", "torch tensors (the Lightning module's net)"),
    ("python", "Python arenas"),
    ("other", "other blocks of 1 MiB or more"),
    ("files", "libraries' pages (file-backed)"),
    ("small", "small allocations (graph IR, kernels, Python), allocator slack"),
)


def status_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1]) / 1024


def live_blocks(log_path: str) -> Dict[int, Tuple[int, str]]:
    """``{address: (size, stack)}`` of the large blocks the allocation log says are live now; ``stack``: the
    caller's address, then the callers above it (hex, comma-separated)."""
    live = {}
    with open(log_path) as log:
        for line in log:
            kind, *rest = line.split()
            if kind in ("a", "M"):
                live[int(rest[1], 16)] = (int(rest[0], 16), ",".join(rest[2:]))
            elif kind in ("f", "U"):
                live.pop(int(rest[-1], 16), None)
    return live


def resident_bytes(pagemap, address: int, size: int) -> int:
    """Bytes of ``[address, address + size)`` in RAM now (``/proc/self/pagemap``'s present bit): a block the
    pool reserved but has not touched costs nothing."""
    page = 4096
    first, last = address // page, (address + size - 1) // page
    pagemap.seek(first * 8)
    entries = memoryview(pagemap.read((last - first + 1) * 8)).cast("Q")
    return sum(1 for e in entries if e >> 63) * page


# -- the child: the training command, with phase marks -------------------------------------------------------
def child(argv) -> int:
    """Run ``train_lseg.main(argv)`` with marks in the allocation log at each phase."""
    import ctypes

    mark_c = ctypes.CDLL(None).malloc_account_mark
    mark_c.argtypes = [ctypes.c_char_p]
    phases = []
    log_path = os.environ["MALLOC_ACCOUNT_OUT"]
    report = os.environ["ACCOUNT_CHILD_JSON"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped by the parent: still mark the end

    def mark(name: str) -> None:
        """A phase boundary: the log gets the name; ``phases`` gets resident memory, its peak so far and the
        resident bytes of every live large block (by caller address)."""
        mark_c(f"phase {name}".encode())
        blocks = {}
        with open("/proc/self/pagemap", "rb") as pagemap:
            for address, (size, stack) in live_blocks(log_path).items():
                blocks[hex(address)] = (size, stack, resident_bytes(pagemap, address, size))
        phases.append({"name": name, "rss_mb": status_mb(), "peak_mb": status_mb("VmHWM"),
                       "file_mb": status_mb("RssFile"), "blocks": blocks})
        # as it goes, so that a run stopped for memory (--limit_mb) still has its account
        with open(report + ".phases", "a") as out:
            out.write(json.dumps(phases[-1]) + "\n")
        with open(report + ".maps", "w") as out:
            out.write(open("/proc/self/maps").read())

    stop = threading.Event()

    def sample():
        while not stop.wait(0.2):
            mark_c(f"rss {status_mb():.0f}".encode())

    sys.path.insert(0, ROOT)
    import mindspore  # noqa: F401  (imports first: their memory is its own line)
    import pytorch_lightning  # noqa: F401
    import torch  # noqa: F401

    from lang_seg.backends import mindspore_backend
    from lang_seg.modules import lsegmentation_module
    from lang_seg.modules.mindspore import bridge

    mark("imports")
    threading.Thread(target=sample, daemon=True).start()

    def after(cls, method, name):
        original = getattr(cls, method)
        count = [0]

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            count[0] += 1
            if count[0] == 1 or "{" in name:
                mark(name.format(count[0]))
            return out

        setattr(cls, method, wrapped)

    after(lsegmentation_module, "check_data_fits", "torch module built")  # called right after it is built
    after(bridge.MindSporeBridge, "__init__", "mindspore net built")
    after(mindspore_backend.MindSporeModel, "_encode_text", "label set's text features")
    after(bridge.MindSporeBridge, "eval_batch", "validation batch {}")
    after(bridge.MindSporeBridge, "train_batch", "training batch {}")
    after(bridge.MindSporeBridge, "setup_optimizer", "training step built")
    after(pytorch_lightning.Trainer, "save_checkpoint", "checkpoint {} saved")

    from lang_seg.commands import train

    try:
        return train.main(argv)
    finally:
        stop.set()
        mark("end")


# -- the parent: run the child, then split its memory -----------------------------------------------------
class Libraries:
    """Which file each code address of the child lies in (its ``/proc/<pid>/maps``)."""

    def __init__(self, maps: str):
        spans = []
        for line in maps.splitlines():
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            spans.append((low, high, os.path.basename(fields[5]) if len(fields) > 5 else ""))
        self.spans = sorted(spans)
        self.starts = [span[0] for span in self.spans]

    def __call__(self, address: int) -> str:
        i = bisect.bisect_right(self.starts, address) - 1
        return self.spans[i][2] if i >= 0 and address < self.spans[i][1] else ""


def category(stack: str, library) -> str:
    """The account line of one block from its stack (caller first)."""
    libs = [library(int(a, 16)) for a in stack.replace(",", " ").split()]
    libs = [lib for lib in libs if lib != "malloc_account.so"]  # the shim's own frames
    caller = libs[0] if libs else ""
    if caller.startswith("libdnnl"):
        return "onednn"
    if any(lib.startswith("libmindspore_ops_cpu") for lib in libs[:4]):
        return "tables"  # a std::vector<size_t> grown by a CPU kernel (its template code lives elsewhere)
    if caller.startswith("libmindspore_cpu"):
        return "pool"
    if caller.startswith("_multiarray_umath"):
        return "numpy"
    if caller.startswith(("libc10", "libtorch")):
        return "torch"
    if caller.startswith("libpython"):
        return "python"
    return "other"


def phase_lines(phase: dict, library) -> Dict[str, float]:
    """MB per account line at one phase mark."""
    lines = Counter()
    for size, stack, resident in phase["blocks"].values():
        lines[category(stack, library)] += resident / MB
    lines["files"] = phase["file_mb"]
    lines["small"] = phase["rss_mb"] - sum(lines.values())
    return dict(lines)


def peak_lines(log_path: str, phases: List[dict], library, peak_mb: float) -> Tuple[str, Dict[str, float]]:
    """The phase in which the sampled resident memory peaked and the account at that sample: blocks live then,
    each at its resident size at the next mark if it is still live there (a pool block never gives pages back),
    else at its size; libraries' pages as at the next mark; the rest is what no block explains."""
    live: Dict[int, Tuple[int, str]] = {}
    best, best_live, best_phase, phase_index, current = -1.0, {}, 0, 0, 0
    with open(log_path) as log:
        for line in log:
            kind, *rest = line.split()
            if kind in ("a", "M"):
                live[int(rest[1], 16)] = (int(rest[0], 16), ",".join(rest[2:]))
            elif kind in ("f", "U"):
                live.pop(int(rest[-1], 16), None)
            elif kind == "m" and rest[0] == "phase":
                phase_index += 1
            elif kind == "m" and rest[0] == "rss":
                current = float(rest[1])
                if current > best:
                    best, best_live, best_phase = current, dict(live), phase_index
    following = phases[min(best_phase, len(phases) - 1)]
    lines = Counter()
    for address, (size, stack) in best_live.items():
        known = following["blocks"].get(hex(address))
        lines[category(stack, library)] += (known[2] if known and known[0] == size else size) / MB
    lines["files"] = following["file_mb"]
    lines["small"] = max(peak_mb, best) - sum(lines.values())
    return following["name"], dict(lines)


def build_shim(folder: str) -> str:
    library = os.path.join(folder, "malloc_account.so")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", library, SHIM, "-ldl"], check=True)
    return library


def train_argv(args) -> List[str]:
    from lang_seg.evaluate import base_size_for

    return ["--exp_name", "memory_account", "--dataset", "ade20k", "--data_path", args.data_path,
            "--backbone", args.backbone, "--batch_size", str(args.batch_size), "--max_steps", str(args.max_steps),
            "--crop_size", str(args.crop_size), "--base_size", str(base_size_for(args.crop_size)),
            "--no-pretrained", "--backend", "mindspore", "--seed", "0", "--accelerator", "cpu", "--devices", "1",
            *args.train_flags]


def watch(pid: int, limit_mb: float, stopped: list) -> None:
    """Stop the child (SIGTERM, then SIGKILL) when its resident memory passes ``limit_mb`` or the machine has less
    than 1 GB available; ``stopped`` gets the resident MB it was stopped at."""
    def mb(path: str, field: str) -> float:
        try:
            with open(path) as f:
                return int(next(line for line in f if line.startswith(field)).split()[1]) / 1024
        except (OSError, StopIteration):
            return -1.0

    deadline = None
    while True:
        rss = mb(f"/proc/{pid}/status", "VmRSS")
        if rss < 0:
            return
        if not stopped and (rss > limit_mb or mb("/proc/meminfo", "MemAvailable") < 1024):
            stopped.append(rss)
            os.kill(pid, signal.SIGTERM)  # handled between Python statements: the end is marked
            deadline = time.monotonic() + 20
        if deadline and (time.monotonic() > deadline or mb("/proc/meminfo", "MemAvailable") < 512):
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.25)


def run_child(args, folder: str) -> Tuple[dict, float, str, Optional[float]]:
    """Run the training command under the shim in ``folder``; ``(child report, peak MB, log path, resident MB it
    was stopped at or None)``."""
    log_path = os.path.join(folder, "allocations.log")
    report = os.path.join(folder, "child.json")
    env = dict(os.environ, LD_PRELOAD=build_shim(folder), MALLOC_ACCOUNT_OUT=log_path, MALLOC_ACCOUNT_DEPTH="4",
               ACCOUNT_CHILD_JSON=report, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    if args.ir:
        env.update(MS_DEV_SAVE_GRAPHS="1", MS_DEV_DUMP_IR_PASSES="graph_build",
                   MS_DEV_SAVE_GRAPHS_PATH=os.path.join(folder, "ir"))
    stopped: List[float] = []
    with open(os.path.join(folder, "output.txt"), "w") as out:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", *train_argv(args)],
                                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
        threading.Thread(target=watch, args=(proc.pid, args.limit_mb, stopped), daemon=True).start()
        _, status, usage = os.wait4(proc.pid, 0)
    if not os.path.exists(report + ".phases") or (os.waitstatus_to_exitcode(status) != 0 and not stopped):
        with open(os.path.join(folder, "output.txt")) as out:
            raise SystemExit(f"error: the training command failed:\n{out.read()[-3000:]}")
    with open(report + ".phases") as f:
        phases = [json.loads(line) for line in f]
    with open(report + ".maps") as f:
        return {"phases": phases, "maps": f.read()}, usage.ru_maxrss / 1024, log_path, stopped[0] if stopped else None


SHORT = {"imports": "imports", "torch module built": "torch net", "mindspore net built": "MS net",
         "label set's text features": "text", "training step built": "step", "end": "end",
         "validation": "val", "training": "train", "checkpoint": "ckpt"}


def short(name: str) -> str:
    """A column header: 'validation batch 2' -> 'val 2'."""
    if name in SHORT:
        return SHORT[name]
    words = name.split()
    number = next((w for w in words if w.isdigit()), "")
    return f"{SHORT.get(words[0], words[0][:6])} {number}".strip()


def format_table(title: str, columns: List[Tuple[str, Dict[str, float]]], totals: List[float]) -> str:
    width = 9
    lines = [title, f"{'resident MB at the end of each phase, and at the peak':<62}"
             + "".join(f"{name:>{width}}" for name, _ in columns)]
    for key, label in LINES:
        lines.append(f"{label:<62}" + "".join(f"{values.get(key, 0):>{width}.0f}" for _, values in columns))
    lines.append(f"{'total (resident)':<62}" + "".join(f"{t:>{width}.0f}" for t in totals))
    return "\n".join(lines)


def ir_reports(folder: str) -> str:
    """Per compiled graph (in compile order): index tables and the tensors alive at its peak."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from ms_graph_ir import report

    files = sorted(glob.glob(os.path.join(folder, "ir", "graph_build_*.ir")),
                   key=lambda f: int(os.path.basename(f).split("_")[2]))
    return "\n".join(report(f, project=ROOT) for f in files)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="clip_vitb32_384")
    parser.add_argument("--crop_size", type=int, default=480)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--max_steps", type=int, default=2)
    parser.add_argument("--data_path", default=os.path.join(ROOT, "data", "bundled"))
    parser.add_argument("--ir", action="store_true", help="also dump and read every compiled graph's IR")
    parser.add_argument("--limit_mb", type=float, default=21000,
                        help="stop the command past this resident memory (or under 1 GB available on the machine)")
    parser.add_argument("--keep", default=None, help="keep the log, IR and output in this folder")
    parser.add_argument("--json", default=None, help="also write the account here")
    parser.add_argument("train_flags", nargs="*", help="after --: more train_lseg.py flags")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    folder = args.keep or tempfile.mkdtemp(prefix="ms_memory_account_")
    os.makedirs(folder, exist_ok=True)
    child_report, peak_mb, log_path, stopped_mb = run_child(args, folder)
    library = Libraries(child_report["maps"])
    phases = child_report["phases"]
    shown = [p for p in phases if p["name"] != "imports"]
    columns = [(short(p["name"]), phase_lines(p, library)) for p in shown]
    peak_phase, at_peak = peak_lines(log_path, phases, library, peak_mb)
    columns.append(("peak", at_peak))
    totals = [p["rss_mb"] for p in shown] + [peak_mb]
    title = (f"{args.backbone}, {args.crop_size}x{args.crop_size}, batch {args.batch_size}, 150 labels, "
             f"{args.max_steps} training batches: peak {peak_mb:.0f} MB (wait4), reached before the mark "
             f"'{peak_phase}'")
    if stopped_mb is not None:
        title += f"; STOPPED for memory at {stopped_mb:.0f} MB resident (--limit_mb {args.limit_mb:.0f})"
    print(format_table(title, columns, totals))
    if args.ir:
        print(ir_reports(folder))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"title": title, "peak_mb": peak_mb, "peak_phase": peak_phase, "stopped_mb": stopped_mb,
                       "columns": [{"phase": name, "lines": values} for name, values in columns],
                       "phases_rss_mb": {p["name"]: p["rss_mb"] for p in phases}}, out, indent=1)
    if args.keep is None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(child(sys.argv[2:]) if sys.argv[1:2] == ["--child"] else main())
