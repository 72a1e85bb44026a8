"""Training through Lightning with the MindSpore backend (the bridge), against the torch backend."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

import lang_seg
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.modules.lseg_module import LSegModule


class Record(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def fit(backend, tmp_path, max_steps=10, max_epochs=2, accumulate=1, ckpt_path=None, module=None,
        trainer_epochs=None, batch_size=2, callbacks=()):
    torch.manual_seed(0)
    if module is None:
        module = LSegModule(backbone="tiny_vitb32", num_features=16, pretrained=False, base_lr=0.16,
                            batch_size=batch_size, max_epochs=max_epochs, backend=backend,
                            accumulate_grad_batches=accumulate)
    dm = SegmentationDataModule(str(BUNDLED), batch_size=batch_size, base_size=160, crop_size=128, seed=0)
    record = Record()
    trainer = pl.Trainer(max_epochs=trainer_epochs or max_epochs, max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[record, *callbacks],
                         default_root_dir=tmp_path, num_sanity_val_steps=0,
                         accumulate_grad_batches=accumulate)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, trainer, np.array(record.losses)


@pytest.mark.slow
def test_mindspore_backend_losses_follow_torch_backend(tmp_path):
    _, _, torch_losses = fit("torch", tmp_path / "t", max_steps=10)
    module, trainer, ms_losses = fit("mindspore", tmp_path / "m", max_steps=10)
    assert len(ms_losses) == len(torch_losses) == 10
    assert abs(ms_losses[0] - torch_losses[0]) <= 1e-4 * torch_losses[0]
    assert np.max(np.abs(ms_losses - torch_losses) / torch_losses) <= 1e-2
    assert ms_losses[-3:].mean() < ms_losses[:3].mean()
    assert module.bridge.optimizer.steps == 10 == trainer.global_step
    [metrics] = trainer.validate(module, datamodule=trainer.datamodule, verbose=False)
    assert {"val_loss", "pix_acc", "mIoU"} <= set(metrics)
    assert 0 < metrics["pix_acc"] <= 1


@pytest.mark.slow
def test_mindspore_checkpoint_evaluates_in_torch(tmp_path):
    module, trainer, _ = fit("mindspore", tmp_path, max_steps=6)
    path = tmp_path / "ms.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, map_location="cpu", weights_only=False)
    ms_opt = raw["optimizer_states"][0]  # torch's SGD layout: state by parameter index, one momentum buffer each
    assert raw["global_step"] == 6 and len(ms_opt["state"]) > 50
    assert all(set(slot) == {"momentum_buffer"} for slot in ms_opt["state"].values())
    head = optimizer_index(module, "scratch.head1.weight")
    assert ms_opt["state"][head]["momentum_buffer"].shape == raw["state_dict"]["net.scratch.head1.weight"].shape
    ms_state = module.bridge.state_dict()
    assert np.array_equal(raw["state_dict"]["net.scratch.head1.weight"].numpy(), ms_state["scratch.head1.weight"])
    model = lang_seg.load_model(str(path))  # torch backend from the MindSpore run's checkpoint
    x, _ = trainer.datamodule.valset[0]
    out = model.logits(x[None].numpy(), module.labels)
    ref = module.bridge.eval_batch(x[None], module.labels).numpy()
    assert np.abs(out - ref).max() <= 1e-4 * ref.std()


@pytest.mark.slow
def test_resume_continues_the_uninterrupted_trajectory(tmp_path):
    """Resumed from the end-of-epoch-1 checkpoint of a 2-epoch run: weights, momentum, schedule (the epoch the
    compiled step reads) and counters come back, and epoch 2 repeats the run's."""
    every_epoch = ModelCheckpoint(dirpath=tmp_path / "k", filename="{epoch}", save_top_k=-1,
                                  save_on_train_epoch_end=True)
    _, _, full = fit("mindspore", tmp_path / "full", max_steps=-1, max_epochs=2, callbacks=[every_epoch])
    module, trainer, second = fit("mindspore", tmp_path / "b", max_steps=-1, max_epochs=2,
                                  ckpt_path=str(tmp_path / "k" / "epoch=0.ckpt"))
    assert len(full) == 24 and len(second) == 12
    np.testing.assert_allclose(second, full[12:], rtol=1e-5)
    assert trainer.global_step == 24


def validate(ckpt, backend, tmp_path):
    module = LSegModule.load_from_checkpoint(ckpt, backend=backend)
    dm = SegmentationDataModule(str(BUNDLED), batch_size=2, base_size=160, crop_size=128, seed=0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    [metrics] = trainer.validate(module, datamodule=dm, verbose=False)
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("source,other", [("torch", "mindspore"), ("mindspore", "torch")])
def test_checkpoint_validates_and_resumes_on_the_other_backend(tmp_path, source, other):
    """One epoch on ``source``; its checkpoint gives the same validation metrics on both backends, and the
    second epoch resumed on ``other`` (weights, momentum, schedule converted) follows the one on ``source``."""
    _, trainer, _ = fit(source, tmp_path / "a", max_steps=-1, max_epochs=2, trainer_epochs=1, batch_size=4)
    ckpt = str(tmp_path / "epoch1.ckpt")
    trainer.save_checkpoint(ckpt)
    mine, theirs = validate(ckpt, source, tmp_path), validate(ckpt, other, tmp_path)
    assert mine["pix_acc"] > 0.01  # trained: not all pixels one class, so a backend mismatch would show
    for key in ("pix_acc", "mIoU"):
        assert abs(mine[key] - theirs[key]) <= 1e-4, (key, mine[key], theirs[key])
    assert abs(mine["val_loss"] - theirs["val_loss"]) <= 1e-4 * mine["val_loss"]

    _, _, same = fit(source, tmp_path / "s", max_steps=-1, max_epochs=2, ckpt_path=ckpt, batch_size=4)
    module, resumed, crossed = fit(other, tmp_path / "o", max_steps=-1, max_epochs=2, ckpt_path=ckpt, batch_size=4)
    assert len(same) == len(crossed) == 6 and resumed.global_step == 12
    assert abs(crossed[0] - same[0]) <= 1e-4 * same[0]
    assert np.max(np.abs(crossed - same) / same) <= 1e-2
    [scheduler] = resumed.lr_scheduler_configs
    assert scheduler.scheduler.last_epoch == 2  # the epoch-1 checkpoint's schedule, stepped once more


def optimizer_index(module, name: str) -> int:
    """The index torch's optimizer state gives the parameter ``name`` (``net.`` left out): the order of
    ``net.pretrained``'s then ``net.scratch``'s parameters, on both backends."""
    names = [n for n, _ in module.torch_shapes["pretrained"] + module.torch_shapes["scratch"]] \
        if hasattr(module, "torch_shapes") else \
        [f"{part}.{n}" for part in ("pretrained", "scratch") for n, _ in getattr(module.net, part).named_parameters()]
    return names.index(name)


def test_optimizer_state_round_trip_between_backends(tmp_path):
    """torch SGD state -> the MindSpore backend's optimizer -> its state_dict: the same file layout, momentum
    buffers byte for byte, the same per-group rates: either backend resumes the other's checkpoint as it is."""
    module, trainer, _ = fit("torch", tmp_path, max_steps=-1, max_epochs=3, trainer_epochs=1)
    [optimizer] = trainer.optimizers
    saved = optimizer.state_dict()
    head = optimizer_index(module, "scratch.head1.weight")
    assert head in saved["state"]
    frozen = optimizer_index(module, "scratch.refinenet4.resConfUnit1.conv1.weight")
    assert frozen not in saved["state"]  # never updated by torch

    ms_module = LSegModule(backbone="tiny_vitb32", num_features=16, pretrained=False, base_lr=0.16, batch_size=2,
                           max_epochs=3, backend="mindspore")
    ms_module.configure_model()
    [ms_optimizer], [ms_scheduler] = ms_module.configure_optimizers()
    assert optimizer_index(ms_module, "scratch.head1.weight") == head
    ms_optimizer.load_state_dict(saved)
    back = ms_optimizer.state_dict()
    assert set(back["state"]) == set(saved["state"])
    for index, slot in saved["state"].items():
        assert torch.equal(back["state"][index]["momentum_buffer"], slot["momentum_buffer"])
    assert [g["lr"] for g in back["param_groups"]] == [g["lr"] for g in saved["param_groups"]]
    assert [len(g["params"]) for g in back["param_groups"]] == [len(g["params"]) for g in saved["param_groups"]]
    fresh = torch.optim.SGD([{"params": list(g)} for g in module.parameter_groups()], lr=1.0, momentum=0.9)
    fresh.load_state_dict(back)  # and torch's own SGD takes the MindSpore backend's state
