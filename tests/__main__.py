"""The suite, one test module per process: ``python -m tests [pytest options]``.

MindSpore keeps every compiled graph, and the cells its functions close over,
for the life of the process (about 1.2 GB per tiny model, measured), so the
whole suite in one process peaked at 22 GB; a process per module stays under
a few GB. Forking instead deadlocks (torch's and MindSpore's thread pools).
``python -m pytest`` still runs everything in one process.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv) -> int:
    start = time.perf_counter()
    failed = []
    for module in sorted(HERE.glob("test_*.py")):
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                str(module.relative_to(HERE.parent)), *argv], cwd=HERE.parent)
        if code not in (0, 5):  # 5: nothing collected (e.g. deselected by -k)
            failed.append(module.name)
    took = time.perf_counter() - start
    if failed:
        print(f"FAILED modules: {', '.join(failed)} ({took:.0f} s)")
        return 1
    print(f"all test modules passed ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
