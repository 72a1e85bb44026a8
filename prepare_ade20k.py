"""Download and unpack ADE20K (SceneParsing, ADEChallengeData2016) for lang-seg.

    python prepare_ade20k.py --data_path ../datasets                 # download (needs a network)
    python prepare_ade20k.py --data_path ../datasets --download-dir ~/Downloads   # use a zip you have

The zip's SHA1 is checked before it is unpacked; an existing, complete
``<data_path>/ADEChallengeData2016`` is left as it is.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

from lang_seg.errors import LangSegError, cli_errors

URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
SHA1 = "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
ZIP_NAME = "ADEChallengeData2016.zip"


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path) -> Path:
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LangSegError(f"cannot download {url} ({exc}): download it by hand and pass --download-dir") from None
    tmp.replace(dest)
    return dest


def prepare(data_path: Path, download_dir: Path = None, sha1: str = SHA1, url: str = URL) -> Path:
    target = data_path / "ADEChallengeData2016"
    if (target / "images").is_dir() and (target / "annotations").is_dir():
        return target
    data_path.mkdir(parents=True, exist_ok=True)
    if download_dir is not None:
        zip_path = Path(download_dir) / ZIP_NAME
        if not zip_path.is_file():
            raise LangSegError(f"{zip_path} does not exist: put the downloaded {ZIP_NAME} there")
    else:
        zip_path = data_path / ZIP_NAME
        if not zip_path.is_file():
            download(url, zip_path)
    actual = sha1_of(zip_path)
    if actual != sha1:
        raise LangSegError(f"{zip_path} has SHA1 {actual}, expected {sha1}: the file is damaged, download it again")
    tmp = data_path / ".ADEChallengeData2016.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp)
    (tmp / "ADEChallengeData2016").replace(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


@cli_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", default="../datasets", help="where ADEChallengeData2016/ goes")
    parser.add_argument("--download-dir", default=None, help=f"a folder that already holds {ZIP_NAME}")
    args = parser.parse_args(argv)
    target = prepare(Path(args.data_path), Path(args.download_dir) if args.download_dir else None)
    print(f"ADE20K ready at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
