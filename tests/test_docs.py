"""The README and the pages in docs/: every link resolves, and every command they show parses with the
command's own parser (its flags exist, its values are of the kinds the command takes), without running."""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
BLOCK = re.compile(r"```(?:bash|sh)\n(.*?)```", re.S)
INLINE = re.compile(r"`((?:lseg-|python (?:train|test)_lseg(?:_zs)?\.py)[^`]*)`")
PROGRAMS = {
    "lseg-train": "lang_seg.commands.train", "python train_lseg.py": "lang_seg.commands.train",
    "lseg-test": "lang_seg.commands.test", "python test_lseg.py": "lang_seg.commands.test",
    "lseg-demo": "lang_seg.commands.demo", "lseg-app": "lang_seg.commands.app",
    "lseg-convert": "lang_seg.commands.convert", "lseg-parity": "lang_seg.tools.parity",
    "lseg-bench": "lang_seg.tools.bench", "python prepare_ade20k.py": "prepare_ade20k",
    "lseg-train-zs": "lang_seg.commands.train_zs", "python train_lseg_zs.py": "lang_seg.commands.train_zs",
    "lseg-test-zs": "lang_seg.commands.test_zs", "python test_lseg_zs.py": "lang_seg.commands.test_zs",
    "lseg-export": "lang_seg.export.command",
}
PACKAGE_MAINS = {"lang_seg.export": "lang_seg.export.command"}  # python -m PACKAGE runs this module's main


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set:
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def test_every_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def commands():
    """``(page, program, argv)`` for every command line shown in a bash block or a table's code span."""
    found = []
    for page in PAGES:
        text = page.read_text()
        lines = []
        for block in BLOCK.findall(text):
            lines += block.replace("\\\n", " ").splitlines()
        lines += INLINE.findall(text)
        for line in lines:
            for part in line.split("#")[0].split("&&"):
                part = part.strip()
                for program, module in PROGRAMS.items():
                    if part.startswith(program + " "):  # a bare name is a mention, not a command
                        found.append((page.name, module, shlex.split(part[len(program):])))
                if part.startswith("python -m lang_seg."):
                    words = shlex.split(part)
                    found.append((page.name, PACKAGE_MAINS.get(words[2], words[2]), words[3:]))
    return found


class Parsed(Exception):
    pass


def parse_only(monkeypatch, module: str, argv):
    """Run the command's ``main`` until its parser has read ``argv``; return the words it did not know."""
    extras = []

    def parse(self, args=None, namespace=None):
        known, unknown = self.parse_known_args(args, namespace)
        extras.extend(unknown)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    if module == "prepare_ade20k":
        monkeypatch.syspath_prepend(str(ROOT))
    main = importlib.import_module(module).main
    if "--help" in argv:
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        return []
    if module == "lang_seg.commands.train" and argv[:1] in (["fit"], ["validate"]):
        monkeypatch.chdir(ROOT)  # the configs the page names are the checkout's
        with pytest.raises(SystemExit) as done:  # Lightning's CLI: print the parsed config, run nothing
            main(argv + ["--print_config"])
        assert done.value.code in (0, None)
        return []
    with pytest.raises(Parsed):
        main(argv)
    return extras


def test_the_pages_show_commands():
    shown = {module for _, module, _ in commands()}
    assert {"lang_seg.commands.train", "lang_seg.commands.test", "lang_seg.tools.parity"} <= shown


@pytest.mark.parametrize("page,module,argv", commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_command_shown_parses(page, module, argv, monkeypatch, capsys):
    extras = parse_only(monkeypatch, module, argv)
    assert not extras, f"{page}: {module} does not take {extras}"


def test_the_check_catches_a_wrong_flag(monkeypatch):
    assert parse_only(monkeypatch, "lang_seg.commands.test", ["--weights", "x", "--no-such-flag"]) == ["--no-such-flag"]
    with pytest.raises(SystemExit):  # a value of the wrong kind
        parse_only(monkeypatch, "lang_seg.commands.train", ["--exp_name", "x", "--backend", "jax"])


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) < 250
