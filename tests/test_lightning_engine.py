"""The MindSpore backend in Lightning's terms: one copy of the weights (MindSpore's) that every reader sees
current, Lightning deciding the updates, tensors Lightning owns, a user's own checkpoint callbacks and
plugins keeping the atomic writes, and upstream's optimizer flags (``--midasproto``, ``--finetune_weights``)."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.errors import LangSegError
from lang_seg.modules.checkpoint_io import AtomicCheckpointIO
from lang_seg.modules.callbacks import LastCheckpoint
from lang_seg.modules.lseg_module import LSegModule
from lang_seg.modules.mindspore.backend import MindSporeBackend
from lang_seg.modules.mindspore.handoff import HOST, Handoff, probe_dlpack
from lang_seg.modules.trainer import trainer_arguments

TINY = dict(backbone="tiny_vitb32", num_features=16, pretrained=False, base_lr=0.16, batch_size=2, max_epochs=2)


def data(crop=64):
    return SegmentationDataModule(str(BUNDLED), batch_size=2, base_size=80, crop_size=crop, seed=0)


def trainer(tmp_path, callbacks=(), **kwargs):
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                      limit_val_batches=0, default_root_dir=tmp_path, callbacks=list(callbacks), **kwargs)


def test_one_class_per_backend_and_the_mindspore_one_is_an_lsegmodule():
    torch.manual_seed(0)
    module = LSegModule(**TINY, backend="mindspore")
    assert isinstance(module, LSegModule) and isinstance(module, MindSporeBackend)
    assert type(module).__name__ == "MindSporeLSegModule"
    assert not list(module.parameters())  # no torch copy of the weights
    with pytest.raises(LangSegError, match="built when Lightning sets the module up"):
        module.net
    torch.manual_seed(0)
    reference = LSegModule(**TINY)  # same seed: the same initial weights, under the same names
    ours, theirs = module.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)

    class Mine(LSegModule):  # a user's subclass runs on either backend
        pass

    assert isinstance(Mine(**TINY, backend="mindspore"), MindSporeBackend)
    assert not isinstance(Mine(**TINY), MindSporeBackend)


class ReadWeights(pl.Callback):
    """What a callback sees of the model's weights after every update: ``pl_module.net`` and
    ``pl_module.state_dict()``."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        live = pl_module.net.scratch.head1.weight.asnumpy().copy()
        saved = pl_module.state_dict()["net.scratch.head1.weight"].numpy().copy()
        truth = pl_module.bridge.state_dict()["scratch.head1.weight"].copy()
        self.seen.append((live, saved, truth))


def test_a_callback_reads_mindspores_current_weights_mid_run(tmp_path):
    torch.manual_seed(0)
    module = LSegModule(**TINY, backend="mindspore")
    reader = ReadWeights()
    trainer(tmp_path, [reader], max_steps=3).fit(module, datamodule=data())
    assert len(reader.seen) == 3
    for live, saved, truth in reader.seen:
        assert np.array_equal(live, truth) and np.array_equal(saved, truth)
    # every step moved them: the reader saw each update, not a stale copy
    assert all(not np.array_equal(a[2], b[2]) for a, b in zip(reader.seen, reader.seen[1:]))


def test_the_update_boundary_is_lightnings_also_without_a_dataloader_length(tmp_path):
    """An iterable dataset (no ``len``): accumulating 2 micro-batches of an epoch of 5, Lightning steps after
    the 2nd, 4th and the last: 3 updates an epoch, on the MindSpore backend as for torch."""
    dm = data()
    dm.setup("fit")

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return (dm.trainset[i] for i in range(10))

    loader = torch.utils.data.DataLoader(Stream(), batch_size=2)
    torch.manual_seed(0)
    module = LSegModule(**TINY, backend="mindspore", accumulate_grad_batches=2)
    fit = trainer(tmp_path, max_epochs=2, accumulate_grad_batches=2)
    fit.fit(module, train_dataloaders=loader)
    assert fit.global_step == 6 and module.bridge.optimizer.steps == 6


def test_module_and_trainer_must_agree_on_accumulation(tmp_path):
    module = LSegModule(**TINY, backend="mindspore", accumulate_grad_batches=2)
    with pytest.raises(LangSegError, match=r"accumulate_grad_batches=2 but the Trainer accumulates 1"):
        trainer(tmp_path, max_steps=1).fit(module, datamodule=data())


def test_loss_and_predictions_handed_to_lightning_are_its_own(tmp_path, monkeypatch):
    """On CPU the hand-off shares memory with MindSpore's buffers, which a later step may reuse: what goes back
    to Lightning (the loss, the predictions, eval logits) is copied."""
    pairs = []
    original = Handoff.to_torch

    def recording(self, t, owned=False):
        out = original(self, t, owned)
        pairs.append((t, out, owned))
        return out

    monkeypatch.setattr(Handoff, "to_torch", recording)
    torch.manual_seed(0)
    module = LSegModule(**TINY, backend="mindspore")
    module.configure_model()
    module.bridge.setup_optimizer("sgd", momentum=0.9)
    dm = data()
    dm.setup("fit")
    img, target = (torch.stack(x) for x in zip(dm.trainset[0], dm.trainset[1]))
    loss, pred = module.bridge.train_batch(img, target, module.labels)
    logits = module.bridge.eval_batch(img, module.labels)
    handed = [(ms_tensor, out) for ms_tensor, out, _ in pairs if out is loss or out is pred or out is logits]
    assert len(handed) == 3
    for ms_tensor, out in handed:
        assert not np.shares_memory(out.numpy(), ms_tensor.asnumpy())
    # the zero-copy view itself (what inputs and gradients use) does share
    view = original(module.bridge.handoff, handed[0][0])
    assert np.shares_memory(view.numpy(), handed[0][0].asnumpy())


def test_dlpack_fallback_says_why_once_and_real_errors_propagate(monkeypatch, recwarn):
    import lang_seg.modules.mindspore.handoff as handoff

    def unsupported(t):
        raise RuntimeError("DLPack is not supported on this device")

    monkeypatch.setattr(handoff, "_dlpack_to_mindspore", unsupported)
    assert probe_dlpack(torch.device("cpu")) == HOST
    [warning] = [w for w in recwarn if "DLPack" in str(w.message)]
    assert "RuntimeError: DLPack is not supported on this device" in str(warning.message)

    # once DLPack works, an error in a real crossing is the caller's, not a silent copy through the host
    monkeypatch.setattr(handoff, "probe_dlpack", lambda device: handoff.DLPACK)
    crossing = Handoff(torch.device("cpu"))
    crossing.device = torch.device("cpu")

    def device_lost(t):
        raise RuntimeError("CUDA error: device lost")

    monkeypatch.setattr(handoff, "_dlpack_to_mindspore", device_lost)
    crossing.path = handoff.DLPACK
    with pytest.raises(RuntimeError, match="device lost"):
        crossing.to_mindspore(torch.ones(2))


def test_a_users_checkpoint_callback_and_plugins_keep_atomic_writes_and_the_last_checkpoint():
    mine = ModelCheckpoint(monitor="mIoU", mode="max")
    kwargs = trainer_arguments("x", dict(callbacks=[mine], plugins=[TorchCheckpointIO()]), backend="mindspore")
    [io] = [p for p in kwargs["plugins"] if isinstance(p, AtomicCheckpointIO)]
    assert isinstance(io.inner, TorchCheckpointIO) and len(kwargs["plugins"]) == 1
    assert mine in kwargs["callbacks"] and any(isinstance(c, LastCheckpoint) for c in kwargs["callbacks"])
    precision = pl.plugins.precision.Precision()
    kwargs = trainer_arguments("x", dict(plugins=[precision]), backend="torch")
    assert precision in kwargs["plugins"] and any(isinstance(p, AtomicCheckpointIO) for p in kwargs["plugins"])


@pytest.mark.slow
def test_midasproto_trains_with_adam_on_both_backends(tmp_path):
    """Upstream's --midasproto: Adam over the same two groups; the MindSpore update follows torch's."""
    runs = {}
    for backend in ("torch", "mindspore"):
        torch.manual_seed(0)
        module = LSegModule(**TINY, backend=backend, midasproto=True)
        fit = trainer(tmp_path / backend, max_steps=4)
        fit.fit(module, datamodule=data())
        [optimizer] = fit.optimizers
        assert isinstance(optimizer, torch.optim.Adam) and type(optimizer).__name__ == "Adam"
        runs[backend] = (module.state_dict(), optimizer.state_dict())
    (t_state, t_opt), (m_state, m_opt) = runs["torch"], runs["mindspore"]
    key = "net.scratch.head1.weight"
    torch.manual_seed(0)
    start = LSegModule(**TINY).state_dict()  # both runs started here: compare their updates
    t_update, m_update = t_state[key] - start[key], m_state[key] - start[key]
    assert torch.linalg.norm(m_update - t_update) <= 1e-2 * torch.linalg.norm(t_update)
    assert set(m_opt["state"]) == set(t_opt["state"])
    some = next(iter(t_opt["state"]))
    assert set(m_opt["state"][some]) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(m_opt["state"][some]["step"]) == float(t_opt["state"][some]["step"]) == 4


def test_finetune_weights_loads_what_fits(tmp_path, capsys):
    from lang_seg.commands import train

    torch.manual_seed(1)
    source = LSegModule(**TINY)
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict(), "pytorch-lightning_version": pl.__version__}, path)
    for backend in ("torch", "mindspore"):
        torch.manual_seed(0)
        module = LSegModule(**TINY, backend=backend)
        train.load_finetune_weights(module, str(path))
        assert torch.equal(module.state_dict()["net.scratch.head1.weight"], source.state_dict()["net.scratch.head1.weight"])
    unrelated = tmp_path / "unrelated.ckpt"
    torch.save({"state_dict": {"net.head.weight": torch.ones(3)}, "pytorch-lightning_version": pl.__version__},
               unrelated)
    with pytest.raises(LangSegError, match="none of its tensors fits"):
        train.load_finetune_weights(module, str(unrelated))


def test_the_mindspore_trainer_refuses_what_it_cannot_do(tmp_path):
    module = LSegModule(**TINY, backend="mindspore")
    with pytest.raises(LangSegError, match="gradient clipping is not available with the MindSpore backend"):
        trainer(tmp_path, max_steps=1, gradient_clip_val=1.0).fit(module, datamodule=data())
    with pytest.raises(LangSegError, match="strategy 'fsdp' is not available with the MindSpore backend"):
        trainer_arguments("x", dict(strategy="fsdp"), backend="mindspore")
    from lang_seg.modules.mindspore.strategy import MindSporeDDPStrategy

    assert isinstance(trainer_arguments("x", dict(devices=2, accelerator="cpu"), backend="mindspore")["strategy"],
                      MindSporeDDPStrategy)
    assert trainer_arguments("x", dict(devices=1, accelerator="cpu"), backend="mindspore")["strategy"] == "auto"
