"""Lightning's checkpoint writes through the project's one atomic write (``lang_seg.files``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from pytorch_lightning.plugins.io import CheckpointIO, TorchCheckpointIO

from lang_seg.files import atomic_write


class AtomicCheckpointIO(CheckpointIO):
    """A run killed mid-write leaves the previous ``last.ckpt`` intact: the checkpoint goes to a temporary
    name beside the target, is flushed to disk, then renamed over it. ``inner`` writes the bytes (torch's
    format by default; a user's own ``CheckpointIO`` plugin keeps its format and gains the atomic rename)."""

    def __init__(self, inner: Optional[CheckpointIO] = None):
        super().__init__()
        self.inner = inner if inner is not None else TorchCheckpointIO()

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        atomic_write(path, lambda tmp: self.inner.save_checkpoint(checkpoint, tmp, storage_options=storage_options))

    def load_checkpoint(self, path, *args, **kwargs) -> Dict[str, Any]:
        return self.inner.load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()
