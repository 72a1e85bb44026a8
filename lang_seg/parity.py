"""Numerical parity between the torch reference and the MindSpore port.

Each check yields rows ``(name, max_abs, rel, tol, ok)``; tolerances:
- forward stages: max |a - b| <= 1e-4 * std(torch tensor) (fp32);
- argmax label maps: agreement >= 99.9 % of pixels;
- gradients: ||g_ms - g_torch|| / ||g_torch|| <= 1e-3 per parameter tensor, against
  the torch reference run in float64 (see ``gradient_rows`` for the one widening);
- BatchNorm running statistics after a training step: same relative bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

STAGE_TOL = 1e-4
ARGMAX_MIN_AGREEMENT = 0.999
GRAD_TOL = 1e-3
GRAD_TOL_CAP = 1e-2


@dataclass
class Row:
    name: str
    max_abs: float
    rel: float
    tol: float
    ok: bool

    def format(self) -> str:
        return f"{self.name:<58} {self.max_abs:>11.3e} {self.rel:>11.3e} {self.tol:>9.1e}  {'pass' if self.ok else 'FAIL'}"


def stage_row(name: str, reference: np.ndarray, other: np.ndarray, tol: float = STAGE_TOL) -> Row:
    """Forward tensors: max abs difference relative to the reference's standard deviation."""
    if reference.shape != other.shape:
        return Row(f"{name} (shape {reference.shape} vs {other.shape})", float("inf"), float("inf"), tol, False)
    max_abs = float(np.abs(reference.astype(np.float64) - other).max()) if reference.size else 0.0
    scale = float(reference.std()) or 1.0
    rel = max_abs / scale
    return Row(name, max_abs, rel, tol, bool(rel <= tol))


def norm_row(name: str, reference: np.ndarray, other: np.ndarray, tol: float = GRAD_TOL) -> Row:
    """Gradients and statistics: relative L2 difference."""
    ref = reference.astype(np.float64)
    diff = ref - other
    max_abs = float(np.abs(diff).max()) if ref.size else 0.0
    denom = float(np.linalg.norm(ref))
    rel = float(np.linalg.norm(diff)) / denom if denom > 0 else float(np.linalg.norm(diff))
    return Row(name, max_abs, rel, tol, bool(rel <= tol))


def argmax_row(reference: np.ndarray, other: np.ndarray, name: str = "argmax agreement") -> Row:
    agree = float((reference.argmax(1) == other.argmax(1)).mean())
    return Row(name, 1.0 - agree, 1.0 - agree, 1.0 - ARGMAX_MIN_AGREEMENT, agree >= ARGMAX_MIN_AGREEMENT)


def forward_rows(torch_model, ms_model, images: np.ndarray, labels: Sequence[str]) -> List[Row]:
    """Stage-by-stage forward comparison of two models built from the same weights."""
    import torch

    text_t = torch_model.text_features(labels)
    with torch.no_grad():
        stages_t = torch_model.net.forward_stages(torch.from_numpy(images), text_t)
    stages_m = ms_model.forward_stages(images, labels)
    rows = [stage_row("text_features", text_t.numpy(), ms_model.text_features(labels).asnumpy())]
    for name, value in stages_t.items():
        rows.append(stage_row(name, value.numpy(), stages_m[name]))
    rows.append(argmax_row(stages_t["out"].numpy(), stages_m["out"]))
    return rows


def gradient_rows(reference: Dict[str, np.ndarray], ms_grads: Dict[str, np.ndarray],
                  torch32: Optional[Dict[str, np.ndarray]] = None) -> List[Row]:
    """Per-tensor gradient rows against ``reference``.

    With ``torch32`` (the torch reference's own fp32 gradients, ``reference`` then
    being its float64 run) a tensor's tolerance widens to twice torch's own fp32
    error, capped at ``GRAD_TOL_CAP``: sums that cancel almost to zero (the shared
    bias of the last depthwise head block, whose exact gradient is ~0 because
    softmax gradients sum to zero over labels) are rounding noise in any fp32 code.
    """
    rows = []
    for name in sorted(set(reference) | set(ms_grads)):
        if name not in reference or name not in ms_grads:
            rows.append(Row(f"grad {name} (missing on one side)", float("inf"), float("inf"), GRAD_TOL, False))
            continue
        tol = GRAD_TOL
        if torch32 is not None and name in torch32:
            own = norm_row(name, reference[name], torch32[name]).rel
            tol = min(max(GRAD_TOL, 2 * own), GRAD_TOL_CAP)
        rows.append(norm_row(f"grad {name}", reference[name], ms_grads[name], tol=tol))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    header = f"{'stage':<58} {'max abs':>11} {'relative':>11} {'tol':>9}  result"
    return "\n".join([header, "-" * len(header)] + [row.format() for row in rows])


def torch_loss_and_grads(net, images: np.ndarray, target: np.ndarray, text_features, double: bool = False):
    """One training-mode forward/backward of the torch reference on a copy of ``net``.

    Returns ``(loss, grads, state)``: gradients of the trainable parameters that
    the loss reaches, and the state (BatchNorm statistics updated) afterwards.
    """
    import copy

    import torch
    import torch.nn.functional as F

    net = copy.deepcopy(net).train()
    dtype = torch.float64 if double else torch.float32
    net.to(dtype)
    x = torch.from_numpy(images).to(dtype)
    out = net(x, text_features.detach().to(dtype))
    loss = F.cross_entropy(out, torch.from_numpy(target).long(), ignore_index=-1)
    loss.backward()
    grads = {
        name: p.grad.numpy()
        for name, p in net.named_parameters()
        if p.grad is not None and name.startswith(("pretrained.", "scratch."))
    }
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return loss.item(), grads, state


def backward_rows(torch_model, ms_model, images: np.ndarray, target: np.ndarray, labels: Sequence[str]) -> List[Row]:
    """Loss, per-parameter gradients and BatchNorm statistics after one training-mode step.

    Gradients are held against the torch reference evaluated in float64: torch's
    own fp32 CPU kernels (bilinear upsampling backward above all) are off by up
    to ~5e-3 relative there, more than the tolerance.
    """
    import mindspore as ms

    from .backends.mindspore_train import LossAndGrad

    text_t = torch_model.text_features(labels)
    loss32, grads32, state32 = torch_loss_and_grads(torch_model.net, images, target, text_t)
    loss64, grads64, _ = torch_loss_and_grads(torch_model.net, images, target, text_t, double=True)

    step = LossAndGrad(ms_model.net, mode=ms_model.mode)
    loss_m, _, grads = step(ms.Tensor.from_numpy(images), ms.Tensor(target.astype(np.int32)), ms_model.text_features(labels))
    ms_model.net.set_train(False)
    grads_m = step.numpy_grads(grads)
    state_m = ms_model.state_dict()

    rows = [norm_row("loss", np.array([loss32]), np.array([float(loss_m)]), tol=STAGE_TOL)]
    rows += gradient_rows(grads64, grads_m, torch32=grads32)
    for name in sorted(k for k in state32 if k.endswith(("running_mean", "running_var"))):
        rows.append(norm_row(f"bn {name}", state32[name], state_m[name]))
    return rows
