"""The suite, one test module per process: ``python -m tests [--fast] [-j N] [pytest options]``.

MindSpore keeps every compiled graph, and the cells its functions close over,
for the life of the process (about 1.2 GB per tiny model, measured), so the
whole suite in one process peaked at 22 GB; a process per module stays under
a few GB. Forking instead deadlocks (torch's and MindSpore's thread pools).
``python -m pytest`` still runs everything in one process.

Two modules run at a time unless ``-j`` says otherwise; the modules in
``ALONE`` (timing ratios, which another process on the same cores would
skew) run after the others, by themselves.

``--fast``: the inner-loop tier, every test module at tiny sizes without the
tests marked ``slow`` (real-size backbones, multi-step training comparisons,
end-to-end runs).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALONE = ("test_bench.py",)
LONGEST = ("test_training_bridge.py", "test_ddp_mindspore.py")  # started first: no long tail at the end


def parse(argv):
    fast = "--fast" in argv
    argv = [a for a in argv if a != "--fast"]
    jobs = 2
    if "-j" in argv:
        i = argv.index("-j")
        jobs = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    return fast, jobs, (["-m", "not slow"] if fast else []) + argv


def main(argv) -> int:
    fast, jobs, pytest_args = parse(argv)
    start = time.perf_counter()
    pending = sorted(HERE.glob("test_*.py"), key=lambda m: (m.name not in LONGEST, m.name in ALONE, m.name))
    running, failed = [], []
    while pending or running:
        while pending and len(running) < jobs and not (running and pending[0].name in ALONE):
            module = pending.pop(0)
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                       str(module.relative_to(HERE.parent)), *pytest_args]
            # each module's report is printed whole when it ends, not interleaved with another's
            log = tempfile.TemporaryFile(mode="w+")
            running.append((module, log, subprocess.Popen(command, cwd=HERE.parent, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(0.2)
        for entry in list(running):
            module, log, process = entry
            if process.poll() is not None:
                running.remove(entry)
                log.seek(0)
                sys.stdout.write(log.read())
                sys.stdout.flush()
                log.close()
                if process.returncode not in (0, 5):  # 5: nothing collected (e.g. every test marked slow)
                    failed.append(module.name)
    took = time.perf_counter() - start
    tier = "fast tier" if fast else "all test modules"
    if failed:
        print(f"FAILED modules: {', '.join(sorted(failed))} ({tier}, {took:.0f} s)")
        return 1
    print(f"{tier} passed ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
