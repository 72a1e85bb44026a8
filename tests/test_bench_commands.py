"""``python -m lang_seg.tools.bench_commands`` runs the training and evaluation commands on both backends and reports
their batch times and each process's peak memory (tiny configuration)."""
import json
import subprocess
import sys

import pytest

from lang_seg.tools.bench_commands import measure


def test_measure_reports_the_peak_memory_of_the_command_and_its_children():
    child = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'b = bytearray(400 << 20); print(len(b))'])"
    result = measure([sys.executable, "-c", child], cwd=".")
    assert result["peak_rss_mb"] > 400 and "419430400" in result["output"]
    with pytest.raises(SystemExit, match="failed with status 3"):
        measure([sys.executable, "-c", "import sys; sys.exit(3)"], cwd=".")


@pytest.mark.slow
def test_bench_commands_quick_mode_reports_both_commands_on_both_backends(tmp_path):
    out = tmp_path / "commands.json"
    cmd = [sys.executable, "-m", "lang_seg.tools.bench_commands", "--backbone", "tiny_vitb32", "--crop_size", "64",
           "--max_steps", "2", "--eval_scales", "1.0", "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    for row in ("train_lseg.py: first batch", "train_lseg.py: later batches (median)",
                "train_lseg.py: peak memory (RSS)", "test_lseg.py --eval: peak memory (RSS)"):
        assert row in result.stdout
    data = json.loads(out.read_text())
    for backend in ("torch", "mindspore"):
        assert data[backend]["train"]["batches"] == 2
        assert 0 < data[backend]["train"]["batch_median_s"] < data[backend]["train"]["wall_s"]
        assert data[backend]["train"]["peak_rss_mb"] > 300 and data[backend]["eval"]["peak_rss_mb"] > 300
