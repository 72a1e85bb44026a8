import zlib
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
LABELS = ["plant", "grass", "cat", "stone", "other"]
TINY_SIZES = {"tiny_vitb32": (128, 192), "tiny_vitl16": (96, 64)}


def nontrivial_state(state, seed=0):
    """Random weights with BatchNorm statistics, BN affine terms and biases away from their defaults."""
    rng = np.random.RandomState(seed)
    state = dict(state)
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = rng.uniform(-0.5, 0.5, value.shape).astype(np.float32)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        elif ".bn" in key and key.endswith(".weight"):
            state[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        elif key.endswith("bias") and not key.startswith("clip_pretrained"):
            state[key] = rng.uniform(-0.1, 0.1, value.shape).astype(np.float32)
    return state


def seeded_state(shapes, seed=0):
    """Weights for ``{name: shape}`` from the names and ``seed`` alone: the same numbers whatever builds the net
    (upstream's code or this project's) and in whatever order, so a real-size fixture needs no checkpoint.

    Each tensor draws from its own generator (seeded by the name's CRC-32 plus ``seed``): matrices and kernels
    normal with std 1/sqrt(fan-in), vector scales (norm layers) uniform in [0.5, 1.5], other vectors (biases)
    in [-0.1, 0.1], BatchNorm means in [-0.5, 0.5] and variances in [0.5, 2]; counters 0. Every float is a
    float16 value, so upstream's fp16 CLIP tensors hold it exactly.
    """
    state = {}
    for name, shape in shapes.items():
        shape = tuple(shape)
        rng = np.random.RandomState((zlib.crc32(name.encode()) + seed) % 2 ** 32)
        if name.endswith("num_batches_tracked"):
            state[name] = np.zeros(shape, np.int64)
            continue
        if name.endswith("running_mean"):
            value = rng.uniform(-0.5, 0.5, shape)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif len(shape) >= 2:
            value = rng.randn(*shape) / np.sqrt(np.prod(shape[1:]))
        elif len(shape) == 1 and name.endswith("weight"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        state[name] = np.asarray(value, np.float16).astype(np.float32)
    return state


def images(shape, seed=1):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


# SGD settings that make each part of the update visible at 1e-6 of the weights: weight decay 1e-2
# moves a tensor by lr * 1e-2 of itself (1e-4 at the backbone's 0.01), far above fp32 rounding (6e-8).
SGD_CHECK = dict(lr=0.01, momentum=0.9, weight_decay=1e-2)
SGD_TOL = 1e-6


def sgd_expected(before, grads, buffers, lr, momentum, weight_decay):
    """torch's SGD (and MindSpore's, first step ``stat``) in float64: d = g + wd * w; buf = d on a tensor's first
    step, else momentum * buf + d; w - lr * buf. Returns ``(weights, buffers)``."""
    weights, new_buffers = {}, {}
    for name, grad in grads.items():
        w = before[name].astype(np.float64)
        d = grad.astype(np.float64) + weight_decay * w
        buf = d if buffers.get(name) is None else momentum * buffers[name] + d
        weights[name], new_buffers[name] = w - lr * buf, buf
    return weights, new_buffers


def sgd_errors(after, expected):
    """``{name: ||w - w_expected|| / ||w_expected||}``."""
    return {n: float(np.linalg.norm(after[n].astype(np.float64) - e) / max(np.linalg.norm(e), 1e-30))
            for n, e in expected.items()}


def sgd_expected_per_group(before, grads, buffers, rates, momentum, weight_decay):
    """``sgd_expected`` for each group (``rates``: name prefix -> learning rate); updates ``buffers`` in place
    and returns the expected weights of every tensor with a gradient."""
    expected = {}
    for prefix, rate in rates.items():
        weights, buffers_now = sgd_expected(before, {n: g for n, g in grads.items() if n.startswith(prefix)},
                                            buffers, rate, momentum, weight_decay)
        expected.update(weights)
        buffers.update(buffers_now)
    return expected


def assert_group_steps(after, expected, groups):
    """Every tensor of every group within ``SGD_TOL`` of the closed form; the message names the group."""
    errors = sgd_errors(after, expected)
    for group, prefix in groups.items():
        names = [n for n in errors if n.startswith(prefix)]
        assert names, f"no {group} tensors were updated"
        worst = max(names, key=errors.get)
        assert errors[worst] <= SGD_TOL, f"{group} group: {worst} is {errors[worst]:.2e} off the closed form"
