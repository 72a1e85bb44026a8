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


def images(shape, seed=1):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)
