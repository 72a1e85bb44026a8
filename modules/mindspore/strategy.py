"""Lightning's DDP for a LightningModule whose weights live in MindSpore.

Everything of ``DDPStrategy`` stays: the launcher (one process per device, or per node), the
``torch.distributed`` process group (gloo on CPU, NCCL on GPUs), distributed samplers, ``reduce`` /
``barrier`` / ``broadcast``, rank-0 checkpointing. What goes is the ``DistributedDataParallel`` wrapper:
it averages the gradients of torch parameters, and this module has none (torch's DDP refuses such a
module). The MindSpore bridge averages MindSpore's gradients through this strategy's process group instead
(``lang_seg.modules.mindspore.bridge``), at each optimizer step, as DDP's reducer does at each backward.
"""
from __future__ import annotations

from pytorch_lightning.strategies import DDPStrategy


class MindSporeDDPStrategy(DDPStrategy):
    strategy_name = "ddp_mindspore"

    def configure_ddp(self) -> None:
        pass  # no torch parameters to wrap: the bridge all-reduces MindSpore's gradients
