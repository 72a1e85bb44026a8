"""`python -m lang_seg.parity` as users run it: passes on a small configuration, fails on a wrong weight."""
import json

import pytest

from lang_seg import parity

QUICK = ["--backbone", "tiny_vitl16", "--size", "96x64", "--batch", "2", "--steps", "3"]


@pytest.mark.slow
def test_parity_command_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "parity.json"
    assert parity.main(QUICK + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[forward]" in text and "[backward]" in text and "[training]" in text and "FAIL" not in text
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["size"] == [96, 64]
    sections = report["sections"]
    names = {row["name"] for part in sections.values() for row in part}
    assert {"layer_1", "path_1", "logits", "argmax agreement", "loss", "step 3 loss"} <= names
    assert any(n.startswith("grad scratch.") for n in names) and any(n.startswith("bn ") for n in names)
    assert any(n.startswith("step 3 weight update") for n in names)
    assert all(row["ok"] and row["rel"] <= row["tol"] for part in sections.values() for row in part)
    assert max(row["rel"] for row in sections["forward"]) < 1e-4


def test_parity_command_fails_on_a_perturbed_weight(capsys):
    assert parity.main(QUICK[:-2] + ["--steps", "0", "--perturb", "scratch.head1.weight=0.05"]) == 1
    text = capsys.readouterr().out
    assert "FAIL: image_features" in text and "FAIL: grad scratch.head1.weight" not in text.split("[backward]")[0]
    assert "FAIL: layer_1" not in text  # the backbone is untouched


def test_parity_command_bad_input(capsys):
    assert parity.main(["--size", "96x64"]) == 2
    assert "pass --backbone" in capsys.readouterr().err
    assert parity.main(QUICK + ["--size", "big"]) == 2
    assert "--size 'big' is not a size" in capsys.readouterr().err
    assert parity.main(QUICK + ["--perturb", "nope.weight"]) == 2
    assert "no MindSpore tensor is named 'nope.weight'" in capsys.readouterr().err
    assert parity.main(QUICK + ["--weights", "missing.ckpt"]) == 2
    assert "missing.ckpt" in capsys.readouterr().err
