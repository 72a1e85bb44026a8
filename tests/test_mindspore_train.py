"""MindSpore's compiled SGD step follows the torch recipe step for step (same weights, same batches)."""
import numpy as np
import pytest
import torch

from lang_seg import NetOptions
from lang_seg.backends.mindspore_backend import MindSporeModel
from lang_seg.backends.mindspore_train import TrainStep
from lang_seg.backends.torch_backend import TorchModel

from .helpers import SGD_CHECK, assert_group_steps, nontrivial_state, sgd_expected_per_group

LABELS = ["sky", "grass", "tree", "other"]


def torch_losses(net, batches, text, lr, steps_per_epoch, max_epochs, accumulate):
    """Upstream's optimisation: SGD groups (1x, 10x), per-epoch poly decay, Lightning-style accumulation."""
    net.train()
    groups = [{"params": list(net.pretrained.parameters()), "lr": lr},
              {"params": list(net.scratch.parameters()), "lr": 10 * lr}]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=1e-4)
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: (1 - e / max_epochs) ** 0.9)
    losses = []
    for i, (x, y) in enumerate(batches):
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x), text), torch.from_numpy(y), ignore_index=-1)
        (loss / accumulate).backward()
        losses.append(loss.item())
        if (i + 1) % accumulate == 0:
            opt.step()
            opt.zero_grad()
            if (i + 1) // accumulate % steps_per_epoch == 0:
                sch.step()
    return np.array(losses)


@pytest.mark.parametrize("accumulate", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_training_steps_match_torch(accumulate):
    import mindspore as ms

    torch.manual_seed(0)
    options = NetOptions("tiny_vitl16", features=16)
    state = nontrivial_state(TorchModel(options).state_dict())
    torch_model, ms_model = TorchModel(options, state=state), MindSporeModel(options, state=state)
    rng = np.random.RandomState(0)
    batches = [(rng.randn(2, 3, 64, 64).astype(np.float32), rng.randint(-1, 4, (2, 64, 64)))
               for _ in range(10 * accumulate)]
    lr, steps_per_epoch, max_epochs = 0.05, 3, 4  # the schedule changes three times in 10 steps
    expected = torch_losses(torch_model.net, batches, torch_model.text_features(LABELS), lr, steps_per_epoch,
                            max_epochs, accumulate)

    step = TrainStep(ms_model.net, lr, steps_per_epoch, max_epochs, accumulate=accumulate)
    text = ms_model.text_features(LABELS)
    losses, stepped = [], []
    for x, y in batches:
        loss, pred, did_step = step(ms.from_numpy(x), ms.Tensor(y.astype(np.int32)), text)
        losses.append(float(loss))
        stepped.append(did_step)
        assert pred.shape == (2, 64, 64)  # each pixel's best of the 4 labels
    losses = np.array(losses)
    assert abs(losses[0] - expected[0]) <= 1e-4 * abs(expected[0])
    assert np.max(np.abs(losses - expected) / np.abs(expected)) <= 1e-2
    assert step.global_step == 10 and sum(stepped) == 10
    assert losses[-3:].mean() < losses[:3].mean()  # it learns
    # the step moved every trainable tensor the loss reaches
    final = ms_model.state_dict()
    assert not np.array_equal(final["scratch.head1.weight"], state["scratch.head1.weight"])
    assert not np.array_equal(final["pretrained.model.blocks.0.attn.qkv.weight"],
                              state["pretrained.model.blocks.0.attn.qkv.weight"])
    assert np.array_equal(final["clip_pretrained.text_projection"], state["clip_pretrained.text_projection"])


@pytest.mark.slow  # two graphs compiled: about a minute
def test_sgd_steps_follow_the_closed_form_per_group():
    """Two compiled TrainStep updates, each tensor within 1e-6 of the float64 closed form computed from the
    gradients at the same weights: the backbone at lr, the decoder at 10x, weight decay on every tensor
    (LayerNorm and BatchNorm scales included, as torch), momentum from the second step."""
    import mindspore as ms

    lr, momentum, weight_decay = SGD_CHECK["lr"], SGD_CHECK["momentum"], SGD_CHECK["weight_decay"]
    torch.manual_seed(0)
    options = NetOptions("tiny_vitl16", features=16)
    model = MindSporeModel(options, state=nontrivial_state(TorchModel(options).state_dict()))
    step = TrainStep(model.net, lr, steps_per_epoch=10, max_epochs=4, momentum=momentum, weight_decay=weight_decay)
    text = model.text_features(LABELS)
    rates = {"pretrained.": lr, "scratch.": 10 * lr}
    rng = np.random.RandomState(0)
    buffers = {}
    for _ in range(2):
        x = ms.from_numpy(rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32))
        y = ms.Tensor(rng.randint(-1, 4, (2, 64, 64)).astype(np.int32))
        before = {n: v.copy() for n, v in model.state_dict().items()}  # state_dict may share memory
        _, _, grads = step.loss_and_grad(x, y, text)
        grads = step.loss_and_grad.numpy_grads(grads)
        step(x, y, text)
        after = model.state_dict()
        expected = sgd_expected_per_group(before, grads, buffers, rates, momentum, weight_decay)
        assert set(expected) == set(grads) and any(".norm1.weight" in n for n in grads)
        assert_group_steps(after, expected, {"backbone": "pretrained.", "decoder": "scratch."})
        assert all(np.array_equal(after[n], before[n]) for n in before
                   if n not in grads and not n.endswith(("running_mean", "running_var")))
