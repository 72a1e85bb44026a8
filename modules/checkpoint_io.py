"""Lightning's checkpoint writes through the project's one atomic write (``lang_seg.files``); its loads allow
the classes lang-seg checkpoints hold for that load only (``lang_seg.safe_load``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from pytorch_lightning.plugins.io import TorchCheckpointIO

from lang_seg.files import atomic_write
from lang_seg.safe_load import project_globals


class AtomicCheckpointIO(TorchCheckpointIO):
    """A run killed mid-write leaves the previous ``last.ckpt`` intact: the checkpoint goes to a
    temporary name beside the target, is flushed to disk, then renamed over it."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        write = super().save_checkpoint
        atomic_write(path, lambda tmp: write(checkpoint, tmp, storage_options=storage_options))

    def load_checkpoint(self, path, *args, **kwargs) -> Dict[str, Any]:
        """Lightning's one load of ``ckpt_path`` (resume, validate, ``"best"``): upstream's callback-state key
        allowed inside this call, never in torch's process-wide allowlist. The commands check the file first
        (``lang_seg.modules.trainer.checkpoint_for_lightning``); a trusted one comes with ``weights_only=False``."""
        import torch

        with torch.serialization.safe_globals(project_globals()):
            return super().load_checkpoint(path, *args, **kwargs)
