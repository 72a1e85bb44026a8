"""MindSpore's training step split in two for data-parallel training: the gradients leave MindSpore, the
caller averages them across processes (the Lightning bridge, through torch.distributed), and the SGD
update comes back in.

``gradient_step`` runs the compiled loss and gradients (adding them into ``TrainStep``'s sums when
accumulating) and returns every trained tensor's gradient when an update is due; ``apply_gradients`` runs
``TrainStep``'s own optimizer (same groups, schedule and state) on the averaged ones. The caller flattens
and splits: MindSpore 2.10 compiles an in-graph concatenation or split of ~230 tensors in about a minute
(and its ``SplitV`` has no CPU kernel), while torch does both at once on either device.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from mindspore import ops

from .mindspore_backend import compiler, named_parameters
from .mindspore_train import TrainStep


def batchnorm_statistics(net) -> List[object]:
    """BatchNorm's running statistics (MindSpore Parameters), in the net's order."""
    return [p for name, p in named_parameters(net) if name.endswith((".moving_mean", ".moving_variance"))]


class SplitStep:
    """``TrainStep``'s update in two halves, for several processes: gradients out, averaged gradients in."""

    def __init__(self, step: TrainStep):
        self.step = step
        optimizer, perm = step.optimizer, step._perm
        sums = step.grad_sums if step.accumulate > 1 else ()
        self.buffers = batchnorm_statistics(step.net)

        def apply(grads):
            done = optimizer(tuple(grads[i] for i in perm))
            for s in sums:  # after the update (side effects run in program order: auto-monad)
                ops.assign(s, ops.zeros_like(s))
            return done

        self._apply = compiler(step.mode)(apply)

    def gradient_step(self, images, target, text_features, last: bool = False):
        """One micro-batch without the update: ``(loss, out, grads)``; ``grads`` holds every trained tensor's
        gradient (summed over the accumulated micro-batches, each scaled by ``1 / accumulate``) in
        ``loss_and_grad.params`` order when the update is due (``TrainStep.steps_now``), else None."""
        step = self.step
        step.net.set_train(True)
        if step.accumulate == 1:
            step.steps_now(last)
            loss, out, grads = step.loss_and_grad(images, target, text_features)
            return loss, out, tuple(grads)
        loss, out = step.add_micro_batch(images, target, text_features)
        grads: Optional[Tuple] = tuple(step.grad_sums) if step.steps_now(last) else None
        return loss, out, grads

    def apply_gradients(self, grads) -> None:
        """The SGD update (``TrainStep``'s optimizer and state) from gradients laid out as ``gradient_step``'s;
        accumulated sums start again from zero."""
        import mindspore as ms

        self._apply(ms.mutable(tuple(grads)))  # graph inputs, not constants: no recompiling per step

