"""The benchmark command runs both backends and reports every row (tiny configuration)."""
import json
import os
import subprocess
import sys

import pytest

from lang_seg.tools.bench import ENCODER, PARTS, ROWS, TORCH_ONLY, UPSTREAM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_quick_mode_reports_every_row(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "lang_seg.tools.bench", "--backbone", "tiny_vitl16", "--size", "64", "--labels", "20",
           "--repeats", "2", "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for row in ROWS + (UPSTREAM,):
        assert row in result.stdout
    assert "peak memory (RSS), own process" in result.stdout
    data = json.loads(out.read_text())
    for backend in ("torch", "mindspore"):
        for row in ROWS:
            assert data[backend][row]["median_s"] > 0
            assert data[backend][row]["repeats"] == (1 if row.startswith("demo") else 2)
        # every row's memory comes from a process of its own
        parts = [p for p in PARTS if backend == "torch" or p not in TORCH_ONLY]
        assert sorted(data[backend]["peak_rss_mb"]) == sorted(parts)
        assert all(mb > 100 for mb in data[backend]["peak_rss_mb"].values())
    assert UPSTREAM not in data["mindspore"] and data["torch"][UPSTREAM]["median_s"] > 0
    for name in ("torch", "mindspore"):
        assert f"over upstream: {name}'s training step (Lightning)" in result.stdout
    assert data["mindspore"]["mode"] == "graph"
    handoff = data["mindspore"]["bridge hand-off"]
    assert 0 < handoff["share"] < 0.5 and "% of the step" in result.stdout
    assert "text cache: torch step" in result.stdout
    demo = data["torch"]["demo: 1 image, 6 scales + flip"]
    assert demo["windows"] == data["mindspore"]["demo: 1 image, 6 scales + flip"]["windows"] >= 12
    # the image encoder on the three runtimes, onnxruntime's in a process of its own too
    assert data["onnxruntime"]["peak_rss_mb"] == {"encoder": data["onnxruntime"]["peak_rss_mb"]["encoder"]}
    for runtime in ("torch", "mindspore", "onnxruntime"):
        assert data[runtime][ENCODER]["median_s"] > 0 and data[runtime]["peak_rss_mb"]["encoder"] > 50
    table = result.stdout[result.stdout.index(f"{ENCODER}, 64x64, batch 1"):]
    assert table.split("\n")[0].split()[-3:] == ["torch", "mindspore", "onnxruntime"]
    assert "peak memory (RSS), own process" in table


def test_mindspore_backend_caps_onednn_isa_unless_user_chose():
    code = (
        "import os, lang_seg\n"
        "lang_seg.load_model(None, backbone='tiny_vitl16', backend='mindspore')\n"
        "print('ISA', os.environ.get('ONEDNN_MAX_CPU_ISA'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "ISA AVX2" in r.stdout, r.stderr[-2000:]
    env["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "ISA AVX512_CORE" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
def test_cpu_probes_show_per_convolution_workspaces_and_the_upsampling_alternative():
    """The README's account of MindSpore's CPU memory rests on scripts/ms_cpu_probes.py: rerun it small."""
    import re

    probes = [sys.executable, os.path.join(ROOT, "scripts", "ms_cpu_probes.py")]
    out = subprocess.run(probes + ["conv-memory", "--size", "64", "--convs", "1", "4"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    held = {(m[0], int(m[1]), m[2]): float(m[3]) for m in
            re.findall(r"(mindspore|torch)\s+(\d+) conv(\d)x\d .*\+\s*(\d+) MB", out)}
    activation_mb = 256 * 64 * 64 * 4 / 2 ** 20
    # each added 3x3 convolution keeps a workspace far larger than its activation in MindSpore's graph
    assert (held["mindspore", 4, "3"] - held["mindspore", 1, "3"]) / 3 > 10 * activation_mb, out
    out = subprocess.run(probes + ["upsample", "--size", "16"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    assert "interpolate" in out and "matmul" in out
    assert float(re.search(r"max \|interpolate - matmul\| = (\S+)", out).group(1)) < 1e-4
