"""Lightning's checkpoint writes through the project's one atomic write (``lang_seg.files``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from pytorch_lightning.plugins.io import TorchCheckpointIO

from lang_seg.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """A run killed mid-write leaves the previous ``last.ckpt`` intact: the checkpoint goes to a
    temporary name beside the target, is flushed to disk, then renamed over it."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        write = super().save_checkpoint
        atomic_write(path, lambda tmp: write(checkpoint, tmp, storage_options=storage_options))
