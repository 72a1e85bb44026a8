"""Upstream's fold splits (HSNet's lists, as lang-seg ships them in ``fewshot_data/data/splits/``), as package data.

``splits/`` beside this file holds:

- ``pascal/{trn,val}/fold{0..3}.txt``: upstream's files, byte for byte: one ``<image>__<class 1..20>`` a line;
- ``fss/{trn,val,test}.txt``: upstream's files, byte for byte: one FSS-1000 category a line;
- ``coco/{trn,val}/fold{0..3}.txt.gz``: upstream's ``fold{0..3}.pkl`` (a pickled ``{class 0..79: [image, ...]}``)
  as text, since a pickle runs code when loaded: line ``c + 1`` lists class ``c``'s images in upstream's order
  as numbers ``n`` standing for ``<dir>/COCO_<dir>_<n, 12 digits>.jpg``, ``<dir>`` being ``train2014`` (trn)
  or ``val2014`` (val), the only names upstream's pickles hold. The order matters: episodes are drawn from it.

``python -m lang_seg.data.fewshot.splits --upstream CHECKOUT`` rewrites them from a checkout of
upstream lang-seg (each source's SHA-256 checked); ``SHA256SUMS`` lists what it writes.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from lang_seg.errors import LangSegError
from lang_seg.files import atomic_write

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
COCO_DIRS = {"trn": "train2014", "val": "val2014"}
UPSTREAM_DIR = "fewshot_data/data/splits"
UPSTREAM = {  # SHA-256 of upstream's files at commit bb00b21
    "coco/trn/fold0.pkl": "5a94e113d8c150a7e20723360dd9779eaa1305ccddc28dff4501e29ed3df5c45",
    "coco/trn/fold1.pkl": "69629cdd84fd57b3bb4e281b5bf65440f7ecf9b62eb119f1d8d7fe78b0fb02a8",
    "coco/trn/fold2.pkl": "594adc4b8ebecf9b8b559284f334ff3dd3fa3c150317cbc6ce7917ce81a08c03",
    "coco/trn/fold3.pkl": "07b38ccc9e15ebfd1ab6288eeaad3a5f289bbba3419807212169fd44b89cc5c5",
    "coco/val/fold0.pkl": "96002389be83b4730d13b814398f54eb2baf5c3283598ec2288d60624d6ef9c3",
    "coco/val/fold1.pkl": "a34deecdf2858fc436f5ea4d5a2d46b6674ce09f7ebce41c34b694116381fa56",
    "coco/val/fold2.pkl": "0f275c5e9bf538f6ef8a95054f6daf2519b53785c4ab7fd07e633dda57dac1e5",
    "coco/val/fold3.pkl": "927597bd78036a460abdab243330667af6ceffdb483bc3331ae55d148f00c449",
    "fss/test.txt": "26f1b9e9dd0c4a58c01db306aeb5bccb5de361d544ec1b15f219efc4b74c0bf1",
    "fss/trn.txt": "815bce03f2502719ba3bd9c1f79111b74ec8ab63e6111830ff7312de49b1cf17",
    "fss/val.txt": "9cac02c58602f2789b4e6393200e450e3ba1edae6673d6a87ae2063d0c547aee",
    "pascal/trn/fold0.txt": "40fded8be6afbc4b70953277f2a178af8055cddd4e73fb4646b7bf19704b9da2",
    "pascal/trn/fold1.txt": "558167c3c6fea0cda1bb7c7a275e66d5de7bc13cbc97e00c5872ac84d5f0954e",
    "pascal/trn/fold2.txt": "d07e35f4a4ae95774c619bafb57d65d682dbd5b9f33c7f71a4f5cef8e3f99609",
    "pascal/trn/fold3.txt": "ffe09100c0c4d9c19d074a33b0f29fe5a89a730579ba39a9f9e908186298ac17",
    "pascal/val/fold0.txt": "748e2f4732ac502cb3aa1f3768936b394bd7ba4e611ac5bf959291a268e249df",
    "pascal/val/fold1.txt": "afce1929e4dacbc13c07f9a26d4ce7738d415e1b18443fe173e58303836f5c14",
    "pascal/val/fold2.txt": "50b1f5218e8f882ca65d85da5be230b978a70067e9b3e0e9fca1528f546bd7fb",
    "pascal/val/fold3.txt": "c3825d7c52d1608d4c62c5b85d6ef3f74cf5898032bc068a94c971df17bdf71a",
}


def _read(relative: str) -> str:
    path = SPLITS_DIR / relative
    if not path.is_file():
        raise LangSegError(f"split list {path} is missing from the installed package: reinstall lang-seg-ms")
    data = path.read_bytes()
    text = (gzip.decompress(data) if relative.endswith(".gz") else data).decode("utf-8")
    return text.replace("\r\n", "\n")  # upstream opens them in text mode (fss/test.txt has CRLF endings)


def pascal_split(split: str, fold: int) -> List[Tuple[str, int]]:
    """``(image, class 0..19)`` in upstream's order (its ``read_metadata``)."""
    rows = _read(f"pascal/{split}/fold{fold}.txt").split("\n")[:-1]
    return [(name, int(cls) - 1) for name, cls in (row.split("__") for row in rows)]


def coco_split(split: str, fold: int) -> Dict[int, List[str]]:
    """``{class 0..79: [image path under COCO2014/, ...]}`` in upstream's order (its pickle's)."""
    folder = COCO_DIRS[split]
    lines = _read(f"coco/{split}/fold{fold}.txt.gz").split("\n")[:-1]
    return {c: [f"{folder}/COCO_{folder}_{int(n):012d}.jpg" for n in line.split()] for c, line in enumerate(lines)}


def fss_split(split: str) -> List[str]:
    """The split's FSS-1000 categories, sorted as upstream sorts them (class id = index + the split's offset)."""
    return sorted(_read(f"fss/{split}.txt").split("\n")[:-1])


class _DataOnly(pickle.Unpickler):
    """Upstream's pickles hold dicts, lists, ints and strings: anything naming a class is refused."""

    def find_class(self, module, name):
        raise LangSegError(f"{module}.{name} in a split pickle: not upstream's file")


def coco_text(classwise: Dict[int, List[str]], split: str) -> bytes:
    folder = COCO_DIRS[split]
    if sorted(classwise) != list(range(80)):
        raise LangSegError("a COCO split pickle must map classes 0..79")
    pattern = re.compile(rf"{folder}/COCO_{folder}_(\d{{12}})\.jpg")
    lines = []
    for c in range(80):
        numbers = []
        for name in classwise[c]:
            match = pattern.fullmatch(name)
            if match is None:
                raise LangSegError(f"unexpected COCO image name {name!r} in the {split} split")
            numbers.append(str(int(match.group(1))))
        lines.append(" ".join(numbers) + "\n")
    return gzip.compress("".join(lines).encode(), 9, mtime=0)


def write_splits(checkout: Path, out: Path = SPLITS_DIR) -> Dict[str, str]:
    """Every split list from a checkout of upstream lang-seg; returns ``{file: SHA-256}`` of what was written."""
    written = {}
    for relative, digest in UPSTREAM.items():
        source = Path(checkout) / UPSTREAM_DIR / relative
        if not source.is_file():
            raise LangSegError(f"{source} not found: pass --upstream a checkout of isl-org/lang-seg")
        data = source.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise LangSegError(f"{source} differs from upstream's at bb00b21: git checkout bb00b21")
        if relative.endswith(".pkl"):
            split = relative.split("/")[1]
            data, relative = coco_text(_DataOnly(io.BytesIO(data)).load(), split), relative[:-4] + ".txt.gz"
        atomic_write(out / relative, lambda tmp, data=data: Path(tmp).write_bytes(data))
        written[relative] = hashlib.sha256(data).hexdigest()
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(written.items()))
    atomic_write(out / "SHA256SUMS", lambda tmp: Path(tmp).write_text(listing))
    return written


def main(argv=None) -> int:
    import argparse

    from lang_seg.errors import cli_errors

    parser = argparse.ArgumentParser(prog="python -m lang_seg.data.fewshot.splits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, type=Path, help="a checkout of isl-org/lang-seg at bb00b21")
    parser.add_argument("--out", type=Path, default=SPLITS_DIR)
    args = parser.parse_args(argv)
    written = cli_errors(write_splits)(args.upstream, args.out)
    if isinstance(written, int):  # the one-line error's status
        return written
    print(f"wrote {len(written)} split lists to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
