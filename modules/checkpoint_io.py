"""Checkpoint writes that never leave a half-written file behind."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to ``<path>.tmp-<pid>`` beside the target, then rename over it.

    A run killed mid-write leaves the previous ``last.ckpt`` intact (a rename
    within one folder is atomic on POSIX and Windows).
    """

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options=storage_options)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
