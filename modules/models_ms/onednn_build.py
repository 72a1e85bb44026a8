"""Build and load the oneDNN convolution kernels (``csrc/``) that ``onednn_conv`` runs as MindSpore operators.

The shared library is compiled on first use, with the machine's C++ compiler
(``$CXX``, else ``c++``/``g++``), against oneDNN's headers from the
``onednn-devel-cpu-gomp`` package (an install requirement) and linked to the
``libdnnl.so.3`` inside the MindSpore wheel, the one MindSpore's own kernels
use (oneDNN 3.10.1, THREADPOOL runtime, in MindSpore 2.10). It goes into a cache
folder (``$LANGSEG_CACHE``, default ``~/.cache/lang_seg``) named by a hash of
everything the binary depends on: sources, flags, compiler, MindSpore's version,
its oneDNN's version and the headers'. A file lock lets concurrent first uses
build it once; a build's failure is remembered there too, so later processes
fall back at once instead of compiling again.

Headers and library need not be the same release: oneDNN keeps its C API
backward compatible within a major version (a program built against 3.x runs on
3.y for y >= x), and the kernel uses only that C API (through the header-only
C++ wrappers). The loader checks it: same major, the library's minor no older
than the headers', the THREADPOOL runtime the kernel's thread pool is written
for, and that the oneDNN the kernel resolved is MindSpore's. No PyPI release
ships 3.10 headers (checked 2026-12-01: onednn-devel has 3.8.1, 3.9.1, 3.11.2,
3.11.4, 3.13.2); every constant the kernel uses is identical from 3.2.0 to
3.13.2, and the link step checks every function against MindSpore's library.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("onednn_conv.cc", "threadpool.h")
LIBRARY = "liblangseg_onednn_conv.so"
# -D_GLIBCXX_USE_CXX11_ABI=0: MindSpore 2.10 is built with the old C++ ABI (the kernel shares no
# std::string with it, only a std::vector<size_t>, whose layout both ABIs share; set to match anyway)
FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
         "-D_GLIBCXX_USE_CXX11_ABI=0")
THREADPOOL = 0x8  # DNNL_RUNTIME_THREADPOOL (dnnl_config.h)
HEADER_PACKAGES = ("onednn-devel-cpu-gomp", "onednn-devel")
BUILD_TIMEOUT_S = 600


class Unavailable(Exception):
    """Why the kernels cannot be used here, in one line."""


class _DnnlVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


def mindspore_lib_dir() -> Path:
    import mindspore

    return Path(mindspore.__file__).resolve().parent / "lib"


def runtime_version(library: Path) -> Tuple[int, int, int, int]:
    """``(major, minor, patch, cpu_runtime)`` of a oneDNN library, from its ``dnnl_version()``."""
    if not library.is_file():
        raise Unavailable(f"MindSpore's oneDNN library {library} is missing")
    dnnl = ctypes.CDLL(str(library))
    dnnl.dnnl_version.restype = ctypes.POINTER(_DnnlVersion)
    v = dnnl.dnnl_version().contents
    return v.major, v.minor, v.patch, v.cpu_runtime


def header_version(include: Path) -> Tuple[int, int, int]:
    text = (include / "oneapi" / "dnnl" / "dnnl_version.h").read_text()
    return tuple(int(re.search(rf"#define DNNL_VERSION_{part}\s+(\d+)", text).group(1))
                 for part in ("MAJOR", "MINOR", "PATCH"))


def installed_headers() -> List[Path]:
    """Include folders of the installed oneDNN header packages."""
    import importlib.metadata as metadata

    found = []
    for name in HEADER_PACKAGES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if str(file).replace("\\", "/").endswith("include/oneapi/dnnl/dnnl_version.h"):
                found.append(Path(dist.locate_file(file)).resolve().parents[2])
    return found


def pick_headers(candidates: List[Path], runtime: Tuple[int, int, int, int]) -> Tuple[Path, Tuple[int, int, int]]:
    """The newest headers the runtime library is compatible with: same major, minor no newer."""
    usable = []
    for include in candidates:
        try:
            version = header_version(include)
        except (OSError, AttributeError):
            continue
        if version[0] == runtime[0] and version[1] <= runtime[1]:
            usable.append((version, include))
    if not usable:
        seen = ", ".join(".".join(map(str, header_version(c))) for c in candidates if (c / "oneapi").is_dir())
        raise Unavailable(f"no oneDNN headers for MindSpore's oneDNN {runtime[0]}.{runtime[1]}.{runtime[2]} "
                          f"(found: {seen or 'none'}); pip install onednn-devel-cpu-gomp==2023.2.0")
    version, include = max(usable)
    return include, version


def compiler() -> Tuple[str, str]:
    """The C++ compiler and its version line."""
    name = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    path = shutil.which(name) if name else None
    if not path:
        raise Unavailable(f"no C++ compiler ({name or 'c++/g++'} not found; apt-get install g++)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"the C++ compiler {path} does not run: {exc}") from None
    return path, (out.stdout.splitlines() or ["?"])[0]


def aot_extra_header() -> Path:
    import mindspore

    return Path(mindspore.__file__).resolve().parent / "include/mindspore/ccsrc/utils/custom_aot_extra.h"


def check_aot_extra_layout(header: Optional[Path] = None) -> None:
    """The kernel sets MindSpore's workspace request through a view of ``AotExtra`` whose first data member
    is ``std::vector<size_t> workspace_`` (csrc/onednn_conv.cc): refuse a MindSpore whose header says otherwise."""
    header = header or aot_extra_header()
    if not header.is_file():
        raise Unavailable(f"MindSpore's {header.name} is missing: cannot check the AOT kernel interface")
    members = data_members(header.read_text(), "AotExtra")
    if not members or members[0] != ("std::vector<size_t>", "workspace_"):
        raise Unavailable(f"MindSpore's AotExtra ({header}) no longer starts with its workspace vector")


def data_members(source: str, name: str) -> List[Tuple[str, str]]:
    """``(type, name)`` of the data members of C++ class ``name`` in ``source``, in order (what lies inside
    braces within the class, function bodies and initialisers, is skipped)."""
    start = source.find(f"class {name} {{")
    if start < 0:
        return []
    depth, top = 0, []
    for char in source[source.index("{", start):]:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1:
            top.append(char)
    return [(kind.strip(), member)
            for kind, member in re.findall(r"^\s*([\w:<>, ]+?[\s*&]+)(\w+)\s*;", "".join(top), re.M)]


def cache_root() -> Path:
    return Path(os.environ.get("LANGSEG_CACHE") or Path.home() / ".cache" / "lang_seg")


def build() -> Path:
    """The kernel library for this machine and MindSpore, compiled now if not cached; Unavailable if it cannot be."""
    import mindspore

    check_aot_extra_layout()
    lib_dir = mindspore_lib_dir()
    runtime = runtime_version(lib_dir / "libdnnl.so.3")
    if runtime[3] != THREADPOOL:
        raise Unavailable(f"MindSpore's oneDNN uses CPU runtime {runtime[3]:#x}, not THREADPOOL as the kernel expects")
    include, headers = pick_headers(installed_headers(), runtime)
    cxx, cxx_version = compiler()
    digest = hashlib.sha256()
    for part in (*[(CSRC / s).read_bytes() for s in SOURCES], *FLAGS, cxx, cxx_version, mindspore.__version__,
                 str(runtime), str(headers), str(include), str(lib_dir)):
        digest.update(part if isinstance(part, bytes) else part.encode())
    folder = cache_root() / "onednn_conv" / digest.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    library, failed = folder / LIBRARY, folder / "build-failed.txt"
    with locked(folder):  # one build per key; the others wait and reuse it
        if failed.is_file():
            raise Unavailable(failed.read_text().strip() + f" (cached; remove {folder} to retry)")
        if not library.is_file():
            _compile(cxx, include, lib_dir, library, failed)
    return library


@contextlib.contextmanager
def locked(folder: Path):
    """Hold the cache folder's file lock (other processes wait)."""
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _compile(cxx: str, include: Path, lib_dir: Path, library: Path, failed: Path) -> None:
    partial = library.with_name(f".{LIBRARY}.{os.getpid()}")
    command = [cxx, *FLAGS, f"-I{include}", str(CSRC / SOURCES[0]), "-o", str(partial),
               f"-L{lib_dir}", "-l:libdnnl.so.3", f"-Wl,--disable-new-dtags,-rpath,{lib_dir}", "-Wl,--no-undefined"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"compiling the oneDNN convolution failed: {exc}") from None
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines() or ["?"]
        message = f"compiling the oneDNN convolution failed: {errors[0].strip()}"
        failed.write_text(message + "\n")
        raise Unavailable(message)
    os.replace(partial, library)  # atomic: a reader never sees half a library


def load(library: Path) -> ctypes.CDLL:
    """Open the kernel library and check the oneDNN it resolved against the one it was built for."""
    try:
        lib = ctypes.CDLL(str(library))
    except OSError as exc:
        raise Unavailable(f"the oneDNN convolution library does not load: {exc}") from None
    lib.lsconv_dnnl_path.restype = lib.lsconv_last_error.restype = ctypes.c_char_p
    lib.lsconv_runtime_cpu_runtime.restype = ctypes.c_uint
    check_versions(lib.lsconv_header_version(), lib.lsconv_runtime_version(), lib.lsconv_runtime_cpu_runtime())
    resolved = Path(lib.lsconv_dnnl_path().decode()).resolve()
    expected = (mindspore_lib_dir() / "libdnnl.so.3").resolve()
    if resolved != expected:
        raise Unavailable(f"the kernel resolved oneDNN from {resolved}, not MindSpore's {expected}")
    return lib


def version_text(version: int) -> str:
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


def check_versions(built: int, runtime: int, cpu_runtime: int) -> None:
    """``built``/``runtime``: oneDNN versions as ``major * 10000 + minor * 100 + patch`` (the library's exports)."""
    if built // 10000 != runtime // 10000 or built // 100 % 100 > runtime // 100 % 100:
        raise Unavailable(f"oneDNN version mismatch: the kernel was built for {version_text(built)}, "
                          f"MindSpore loads {version_text(runtime)}")
    if cpu_runtime != THREADPOOL:
        raise Unavailable(f"MindSpore's oneDNN uses CPU runtime {cpu_runtime:#x}, not THREADPOOL")


def main(argv=None) -> int:
    """``python -m <this module>``: build (or find) the library and print its path, or why not."""
    try:
        print(build())
    except Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
