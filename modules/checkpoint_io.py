"""Lightning's checkpoint writes through the project's one atomic write (``lang_seg.files``); its loads allow
the classes lang-seg checkpoints hold for that load only (``lang_seg.safe_load``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from pytorch_lightning.plugins.io import CheckpointIO, TorchCheckpointIO

from lang_seg.files import atomic_write
from lang_seg.safe_load import project_globals


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
        """Lightning's one load of ``ckpt_path`` (resume, validate, ``"best"``): upstream's callback-state key
        allowed inside this call, never in torch's process-wide allowlist. The commands check the file first
        (``lang_seg.modules.trainer.checkpoint_for_lightning``); a trusted one comes with ``weights_only=False``."""
        import torch

        with torch.serialization.safe_globals(project_globals()):
            return self.inner.load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()
