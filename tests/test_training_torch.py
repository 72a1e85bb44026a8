"""Upstream's training recipe through Lightning on the torch reference (bundled data, tiny model)."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import lang_seg
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.modules.lseg_module import LSegModule
from lang_seg.modules.lsegmentation_module import poly_lambda

from .helpers import SGD_CHECK, assert_group_steps, sgd_expected_per_group

GROUPS = {"backbone": "pretrained.", "decoder": "scratch."}


def tiny_module(**kwargs):
    torch.manual_seed(0)
    args = dict(backbone="tiny_vitb32", num_features=16, pretrained=False, base_lr=0.16, batch_size=2, max_epochs=4)
    args.update(kwargs)
    return LSegModule(**args)


def test_optimizer_groups_and_poly_schedule_follow_upstream():
    module = tiny_module(base_lr=0.004, batch_size=4, max_epochs=10, weight_decay=1e-4)
    [opt], [sch] = module.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD)
    base = 0.004 / 16 * 4
    pretrained, scratch = opt.param_groups
    assert pretrained["lr"] == pytest.approx(base) and scratch["lr"] == pytest.approx(10 * base)
    assert pretrained["momentum"] == 0.9 and pretrained["weight_decay"] == 1e-4
    n_pre = sum(p.numel() for p in module.net.pretrained.parameters())
    assert sum(p.numel() for p in pretrained["params"]) == n_pre
    trainable = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in trainable for p in module.net.clip_pretrained.parameters())
    for epoch in range(1, 10):
        opt.step()
        sch.step()
        factor = (1 - epoch / 10) ** 0.9
        assert opt.param_groups[0]["lr"] == pytest.approx(base * factor)
        assert opt.param_groups[1]["lr"] == pytest.approx(10 * base * factor)
    assert poly_lambda(10)(0) == 1.0


def test_sgd_steps_follow_the_closed_form_per_group():
    """Two steps of configure_optimizers' SGD, each tensor within 1e-6 of the float64 closed form: the backbone
    at lr, the decoder at 10x, weight decay on every tensor, momentum from the second step; nothing else moves."""
    lr, momentum, weight_decay = SGD_CHECK["lr"], SGD_CHECK["momentum"], SGD_CHECK["weight_decay"]
    module = tiny_module(base_lr=lr * 16 / 2, batch_size=2, weight_decay=weight_decay, momentum=momentum,
                         labels=["sky", "grass", "tree", "other"]).train()
    [opt], _ = module.configure_optimizers()
    rates = {"pretrained.": lr, "scratch.": 10 * lr}
    rng = np.random.RandomState(0)
    buffers = {}
    for _ in range(2):
        x = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32))
        y = torch.from_numpy(rng.randint(-1, 4, (2, 128, 128)))
        opt.zero_grad()
        module.loss(module(x), y).backward()
        before = {n: p.detach().numpy().copy() for n, p in module.net.named_parameters()}
        grads = {n: p.grad.numpy().copy() for n, p in module.net.named_parameters() if p.grad is not None}
        opt.step()
        after = {n: p.detach().numpy() for n, p in module.net.named_parameters()}
        expected = sgd_expected_per_group(before, grads, buffers, rates, momentum, weight_decay)
        assert set(expected) == set(grads)
        assert_group_steps(after, expected, GROUPS)
        assert all(np.array_equal(after[n], before[n]) for n in before if n not in grads)  # frozen, never reached


def test_text_features_computed_once_and_frozen(monkeypatch):
    module = tiny_module(labels=["sky", "grass", "other"])
    calls = []
    encode = module.net.encode_text
    monkeypatch.setattr(module.net, "encode_text", lambda labels: calls.append(1) or encode(labels))
    x = torch.randn(1, 3, 128, 128)
    module(x)
    module(x)
    assert len(calls) == 1
    assert not any(p.requires_grad for p in module.net.clip_pretrained.parameters())


def test_loss_falls_on_bundled_data_and_checkpoint_loads(tmp_path):
    module = tiny_module()
    dm = SegmentationDataModule(str(BUNDLED), batch_size=2, base_size=160, crop_size=128, seed=0)
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = pl.Trainer(max_epochs=4, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Record()], default_root_dir=tmp_path,
                         num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert len(losses) == 48
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.8 * first, (first, last)
    metrics = trainer.callback_metrics
    assert {"val_loss", "pix_acc", "mIoU", "train_loss"} <= set(metrics)
    assert 0.0 <= float(metrics["pix_acc"]) <= 1.0

    path = tmp_path / "lseg.ckpt"
    trainer.save_checkpoint(path)
    model = lang_seg.load_model(str(path))
    assert model.options.backbone == "tiny_vitb32" and model.options.features == 16
    x, _ = dm.valset[0]
    labels = module.labels
    with torch.no_grad():
        expected = module.eval()(x[None]).numpy()
    np.testing.assert_allclose(model.logits(x[None].numpy(), labels), expected, atol=1e-5)
