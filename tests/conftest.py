import json
import os
import warnings

# Tests never touch the network: pretrained-weight loaders fail at once instead.
os.environ["LANGSEG_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

from .helpers import FIXTURES


@pytest.fixture(scope="session")
def upstream_fixture():
    """Checkpoints and outputs written by upstream lang-seg's own model code (commit bb00b21, random
    weights, CPU fp32) for the two tiny configurations: ``tests/fixtures/make_upstream_fixtures.py``."""

    def load(config):
        meta = json.loads((FIXTURES / f"upstream_{config}.json").read_text())
        data = np.load(FIXTURES / f"upstream_{config}_out.npz")
        return FIXTURES / f"upstream_{config}.ckpt", meta, data

    return load


@pytest.fixture(autouse=True)
def _quiet_pkg_resources():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        yield
