"""The MindSpore training graph keeps no per-element index tables (``modules/models_ms/table_free.py``), measured
with the allocation log of ``scripts/ms_memory_account.py``; the table-free operations give torch's values and
gradients."""
import os
import shutil
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
import torch

from lang_seg.modules.models_ms import table_free

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

# one LossAndGrad step of the tiny net at 128x128 with 150 labels; the large blocks still live afterwards are
# what the compiled graphs keep
STEP = """
import json, sys
import numpy as np
import mindspore as ms
from lang_seg.backends.mindspore_backend import MindSporeModel
from lang_seg.backends.mindspore_train import LossAndGrad
from lang_seg.config import NetOptions
model = MindSporeModel(NetOptions("tiny_vitb32"))
text = model.text_features([f"label {i}" for i in range(150)])
x = ms.Tensor(np.random.RandomState(0).randn(1, 3, 128, 128).astype(np.float32))
y = ms.Tensor(np.random.RandomState(1).randint(-1, 150, (1, 128, 128)).astype(np.int32))
loss, out, grads = LossAndGrad(model.net)(x, y, text)
print(float(loss.asnumpy()))
import ctypes
ctypes.CDLL(None).malloc_account_mark(b"phase done")  # what is live here is what the graphs keep
json.dump({"maps": open("/proc/self/maps").read()}, open(sys.argv[1], "w"))
"""


def held_by_line(tmp_path):
    """MB the compiled graphs hold after one training step, per account line of ``ms_memory_account``."""
    from ms_memory_account import SHIM, Libraries, category, live_blocks

    shim = tmp_path / "malloc_account.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), SHIM, "-ldl"], check=True)
    log, maps = tmp_path / "allocations.log", tmp_path / "maps.json"
    env = dict(os.environ, LD_PRELOAD=str(shim), MALLOC_ACCOUNT_OUT=str(log), MALLOC_ACCOUNT_DEPTH="4",
               PYTHONPATH=ROOT)
    script = tmp_path / "step.py"  # MindSpore compiles functions from source files only
    script.write_text(STEP)
    result = subprocess.run([sys.executable, str(script), str(maps)], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    library = Libraries(json.loads(maps.read_text())["maps"])
    held = {}
    text = log.read_text()  # up to the mark: after it come the interpreter's teardown frees
    log.write_text(text[: text.index("m phase done")])
    for size, stack in live_blocks(str(log)).values():
        line = category(stack, library)
        held[line] = held.get(line, 0) + size / 2 ** 20
    return held


@pytest.mark.skipif(shutil.which("gcc") is None, reason="builds the allocation-log shim with gcc")
def test_training_graph_keeps_no_index_tables(tmp_path):
    held = held_by_line(tmp_path)
    # before table_free (ops.cross_entropy, the dividing and transposing cosine head, derived softmax and norm
    # gradients, text encoder's broadcasting adds): 266 MB of tables here; now the attention's head split and
    # merge transposes alone, 2.0 MB (measured 2026-12-01)
    assert held.get("tables", 0) < 10, held
    assert held.get("pool", 0) > 0 and held.get("onednn", 0) > 0, held  # the log sees the graphs' other blocks


def mindspore_value_and_grad(fn, x: np.ndarray, dout: np.ndarray, compiled: bool):
    param = ms.Parameter(ms.Tensor(x), name="x")
    weights = ms.Tensor(dout)

    def loss():
        return (fn(param * 1.0) * weights).sum()

    step = ms.value_and_grad(loss, None, [param])
    value, (grad,) = (ms.jit(step, jit_level="O1") if compiled else step)()
    return float(value.asnumpy()), grad.asnumpy()


def torch_value_and_grad(fn, x: np.ndarray, dout: np.ndarray):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = (fn(t) * torch.tensor(dout, dtype=torch.float64)).sum()
    value.backward()
    return value.item(), t.grad.numpy()


DIVISOR = np.abs(np.random.RandomState(1).randn(2, 1, 5, 4)).astype(np.float32) + 0.5


def divide_by_divisor(t):  # compiled: no imports inside
    return table_free.divide(t, table_free.expand(ms.Tensor(DIVISOR), DIVISOR.shape))


@pytest.mark.parametrize("compiled", [True, False], ids=["graph", "eager"])
@pytest.mark.parametrize("name", ["softmax", "unit_normalize", "gelu", "divide"])
def test_table_free_operations_give_torch_values_and_gradients(name, compiled):
    rng = np.random.RandomState(0)
    x = (rng.randn(2, 6, 5, 4) * 2).astype(np.float32)
    dout = rng.randn(*x.shape).astype(np.float32)
    ms_fn, torch_fn = {
        "softmax": (table_free.Softmax(axis=1), lambda t: torch.softmax(t, dim=1)),
        "unit_normalize": (table_free.UnitNormalize(axis=1), lambda t: t / t.norm(dim=1, keepdim=True)),
        "gelu": (table_free.GELU(), torch.nn.functional.gelu),
        "divide": (divide_by_divisor, lambda t: t / torch.tensor(DIVISOR, dtype=torch.float64)),
    }[name]
    value, grad = mindspore_value_and_grad(ms_fn, x, dout, compiled)
    expected_value, expected_grad = torch_value_and_grad(torch_fn, x, dout)
    assert value == pytest.approx(expected_value, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
