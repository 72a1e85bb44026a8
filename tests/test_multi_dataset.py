"""Several datasets in one run (#21 item 3): each step's batch from one dataset, scored with its label set, on
both backends; per-dataset validation metrics; the order reproducible, resumable and the same at any process
count; bad input in one line before anything is written."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl

from lang_seg import LangSegError
from lang_seg.commands import train
from lang_seg.data.bundled import ROOT as BUNDLED
from lang_seg.data.datamodule import SegmentationDataModule
from lang_seg.data.mixture import MixtureSampler
from lang_seg.data.registry import dataset_labels
from lang_seg.modules.callbacks import Interruptible
from lang_seg.modules.lseg_module import LSegModule

from .ddp_helpers import TINY as DDP_TINY, records, run
from .test_datasets import make_folder, save_mask, save_rgb

REPO = Path(__file__).resolve().parent.parent
BOTH = "ade20k,pascal_voc"  # the bundled datasets: 24 and 12 training images, 150 and 21 classes
NET = dict(backbone="tiny_vitb32", num_features=16, pretrained=False, base_lr=0.16, max_epochs=1)
BATCH, STEPS, CUT = 4, 9, 4  # an epoch: 6 ADE20K and 3 VOC batches of 4; a checkpoint before step CUT


# -- the order of datasets and batches --------------------------------------------------------------------
def keys_by_step(sampler, steps, batch):
    keys = list(sampler)
    return [keys[s * batch:(s + 1) * batch] for s in range(steps)]


def test_each_step_draws_one_dataset_in_proportion_to_its_size():
    sampler = MixtureSampler([24, 12], seed=0, batch_size=4)
    steps = keys_by_step(sampler, 9, 4)
    assert len(sampler) == 36 and all(len({d for d, _, _ in step}) == 1 for step in steps)
    assert Counter(step[0][0] for step in steps) == {0: 6, 1: 3}  # every image once an epoch
    for source, size in ((0, 24), (1, 12)):
        seen = sorted(i for step in steps for d, i, _ in step if d == source)
        assert seen == list(range(size))
    assert len({tuple(s[0][0] for s in steps) for seed in range(4)
                for steps in [keys_by_step(MixtureSampler([24, 12], seed, 4), 9, 4)]}) > 1  # the seed shuffles
    assert list(MixtureSampler([24, 12], 0, 4)) == list(sampler)  # and fixes
    sampler.set_epoch(1)
    assert list(sampler) != list(MixtureSampler([24, 12], 0, 4)) and {e for _, _, e in sampler} == {1}


def test_weights_share_the_epochs_steps_and_a_second_pass_is_augmented_afresh():
    sampler = MixtureSampler([24, 12], seed=0, batch_size=4, weights=[1, 2])
    steps = keys_by_step(sampler, 9, 4)
    assert Counter(step[0][0] for step in steps) == {0: 3, 1: 6}  # the same 9 steps, by weight
    voc = [(i, draw) for step in steps for d, i, draw in step if d == 1]
    assert sorted(i for i, draw in voc if draw == 0) == list(range(12))  # a whole pass, then another
    assert sorted(i for i, draw in voc if draw == "0.1") == list(range(12))


@pytest.mark.parametrize("sizes, batch, replicas", [((24, 12), 2, 2), ((22, 13), 2, 2), ((25, 9), 1, 3)])
def test_processes_draw_the_same_dataset_and_share_the_global_batch(sizes, batch, replicas):
    """Process r of R (batch b) gets, at every step, items [r*b, (r+1)*b) of the one-process batch R*b: the
    same dataset on every process, the same images and augmentation draws."""
    one = keys_by_step(MixtureSampler(sizes, 3, batch * replicas), len(MixtureSampler(sizes, 3, batch * replicas))
                       // (batch * replicas), batch * replicas)
    parts = [MixtureSampler(sizes, 3, batch, r, replicas) for r in range(replicas)]
    assert all(len(p) == len(one) * batch for p in parts)
    mine = [keys_by_step(p, len(one), batch) for p in parts]
    for step, whole in enumerate(one):
        assert [k for rank in mine for k in rank[step]] == whole


def test_skip_resumes_mid_epoch():
    whole = list(MixtureSampler([24, 12], 0, 2, 1, 2))
    resumed = MixtureSampler([24, 12], 0, 2, 1, 2)
    resumed.skip = 3 * 2  # three steps done, this process's share of them
    assert list(resumed) == whole[6:] and list(resumed) == whole  # once: the next epoch starts at its start


def test_without_a_seed_every_process_takes_rank_zeros_draw():
    class Strategy:
        def broadcast(self, value, src=0):
            return 12345  # what rank 0 drew

    class Trainer:
        global_rank, world_size, strategy = 1, 2, Strategy()
        fit_loop = SimpleNamespace(epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=0)))

    dm = SegmentationDataModule(None, BOTH, batch_size=2, base_size=80, crop_size=64)
    dm.setup("fit")
    dm.trainer = Trainer()
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, MixtureSampler) and sampler.seed == 12345 and sampler.rank == 1


# -- the data module, the commands' two forms ------------------------------------------------------------------
def make_citys(root):
    for split in ("train", "val"):
        for i in range(2):
            stem = root / f"{split}/ulm/ulm_00000{i}_000019"
            save_rgb(root / "leftImg8bit" / f"{stem.relative_to(root)}_leftImg8bit.png", 64, 32)
            save_mask(root / "gtFine" / f"{stem.relative_to(root)}_gtFine_labelIds.png", np.full((32, 64), 26))
    return root


def test_data_module_reads_each_dataset_at_its_own_sizes_and_tags_batches(tmp_path):
    make_citys(tmp_path / "citys")
    dm = SegmentationDataModule(f"{tmp_path / 'citys'},{BUNDLED}", ["citys", "pascal_voc"], batch_size=2, seed=0)
    assert dm.names == ["citys", "pascal_voc"] and list(dm.labels) == dm.names
    assert dm.labels["pascal_voc"] == dataset_labels("pascal_voc") and len(dm.labels["citys"]) == 19
    dm.setup("fit")
    assert [(d.base_size, d.crop_size) for d in dm.trainsets] == [(2048, 768), (520, 480)]  # upstream's, each
    sources = {0: 0, 1: 0}
    for images, target, source in dm.train_dataloader():
        assert len(set(source.tolist())) == 1 and images.shape[-1] == (768, 480)[int(source[0])]
        sources[int(source[0])] += 1
    assert sources == {0: 1, 1: 6}
    loaders = dm.val_dataloader()
    assert [next(iter(loader))[2].tolist() for loader in loaders] == [[0, 0], [1, 1]]
    with pytest.raises(LangSegError, match="reads 2 datasets: use trainsets"):
        dm.trainset
    folders = SegmentationDataModule(f"{make_folder(tmp_path / 'a')},{make_folder(tmp_path / 'b')}", "folder,folder")
    assert folders.names == ["folder", "folder_2"]  # each logged under its own name


def test_upstream_flags_and_the_cli_form_take_lists(tmp_path, monkeypatch):
    from lang_seg.modules.cli import LSegCLI

    monkeypatch.chdir(tmp_path)
    args = train.build_parser().parse_args(["--exp_name", "m", "--dataset", BOTH, "--dataset_weights", "1,2",
                                            "--batch_size", "4", "--no-pretrained", "--backbone", "tiny_vitb32"])
    module, datamodule, *_ = train.build(args)
    assert module.sources == [("ade20k", 150), ("pascal_voc", 21)] and datamodule.weights == [1.0, 2.0]
    assert module.hparams.labels == {"ade20k": dataset_labels("ade20k"), "pascal_voc": dataset_labels("pascal_voc")}
    base = ["--config", str(REPO / "configs/bundled_multi.yaml"), "--model.backend", "torch"]
    cli = LSegCLI(args=base, run=False)
    assert cli.datamodule.names == ["ade20k", "pascal_voc"] and list(cli.model.labels) == cli.datamodule.names
    cli = LSegCLI(args=base + ["--data.dataset", "pascal_voc,ade20k", "--data.dataset_weights", "[1, 2]"], run=False)
    assert cli.model.sources == [("pascal_voc", 21), ("ade20k", 150)] and cli.datamodule.weights == [1.0, 2.0]


# -- bad input: one line, before anything is written -----------------------------------------------------------
CLI = ["fit", "--config", str(REPO / "configs/bundled_multi.yaml"), "--model.backend", "torch"]
FLAGS = ["--exp_name", "x", "--backbone", "tiny_vitb32", "--num_features", "16", "--no-pretrained", "--batch_size", "4"]
BAD = [
    (["--dataset", BOTH, "--data_path", "a,b,c", *FLAGS], "2 datasets (ade20k, pascal_voc) but 3 data paths"),
    (["--dataset", "ade20k,voc", *FLAGS], "unknown dataset 'voc': choose one of ade20k, folder, pascal_voc, "),
    (["--dataset", BOTH, "--dataset_weights", "1", *FLAGS], "2 datasets but 1 dataset weights: give one weight"),
    (["--dataset", BOTH, "--dataset_weights", "1,0", *FLAGS], "every weight must be a positive number"),
    (["--dataset", BOTH, "--dataset_weights", "1,x", *FLAGS], "give one number per dataset, e.g. 3,1"),
    (["--dataset", BOTH, *FLAGS, "--batch_size", "16"],
     "pascal_voc has 12 training images, fewer than one batch of 16: every step draws a whole batch from one "
     "dataset; lower --batch_size"),
    ([*CLI, "--data.dataset", "[ade20k, pascal_voc, ade20k]", "--data.data_path", "[a, b]"],
     "3 datasets (ade20k, pascal_voc, ade20k) but 2 data paths"),
    ([*CLI, "--model.labels", "[sky, grass]"],
     "the model has one label set but the data has 2 datasets (ade20k, pascal_voc): give no labels"),
    ([*CLI, "--model.labels", "{pascal_voc: [a, b], ade20k: [c, d]}"],
     "the model's label sets are for pascal_voc, ade20k but the data's datasets are ade20k, pascal_voc"),
    ([*CLI, "--model.labels", "{ade20k: [a, b], pascal_voc: [c, d]}"],
     "the model has 2 labels for ade20k but the dataset has 150 classes"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_input_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert train.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_mindspore_bounds_the_graphs_it_compiles(tmp_path, monkeypatch, capsys):
    """Five label counts: refused before MindSpore compiles anything or anything is written."""
    monkeypatch.chdir(tmp_path)
    for name, labels in (("three", "a\nb\nc\n"), ("four", "a\nb\nc\nd\n"), ("two", "a\nb\n")):
        make_folder(tmp_path / name, labels=labels, masks={"training/a": [[1, 2]], "training/b": [[2, 1]],
                                                           "validation/c": [[1, 1]]})
    argv = ["--dataset", "ade20k,pascal_voc,folder,folder,folder", "--data_path", f"{BUNDLED},{BUNDLED},three,four,two",
            "--exp_name", "x", "--backbone", "tiny_vitb32", "--num_features", "16", "--no-pretrained",
            "--batch_size", "2", "--crop_size", "64", "--backend", "mindspore"]
    before = sorted(tmp_path.iterdir())
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert ("error: the MindSpore backend compiles graphs for each label count and crop size of the datasets, and "
            "keeps them: 5 here (150 labels at 64, 21 labels at 64, 3 labels at 64, 4 labels at 64, 2 labels at 64), "
            "at most 4 a run") in err
    assert sorted(tmp_path.iterdir()) == before


# -- training on both backends ----------------------------------------------------------------------------
class TextCount:
    """MindSpore's compiled loss and gradients, counting the text features (labels) of each call."""

    def __init__(self, graph, counts: list):
        self.graph, self.counts = graph, counts

    def __call__(self, images, target, text_features, *rest):
        self.counts.append(text_features.shape[0])
        return self.graph(images, target, text_features, *rest)

    def __getattr__(self, name):
        return getattr(self.graph, name)


class Record(pl.Callback):
    """Each training step's dataset, loss, images and the label count of the logits it was scored with (torch:
    the net's output; MindSpore: the text features its compiled loss takes, whose count the logits have)."""

    def __init__(self, save_at=None):
        self.steps, self.channels, self.save_at = [], [], save_at

    def on_train_start(self, trainer, module):
        if module.backend == "torch":
            module.net.register_forward_hook(
                lambda net, inputs, out: self.channels.append(out.shape[1]) if net.training else None)
        else:
            module.bridge.loss_and_grad = TextCount(module.bridge.loss_and_grad, self.channels)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.save_at:  # what Ctrl-C leaves: the state before this step
            trainer.save_checkpoint(self.path)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        images, _, source = batch
        self.steps.append(dict(source=source.tolist(), loss=float(outputs["loss"]), channels=self.channels.pop(),
                               sums=images.double().sum((1, 2, 3)).tolist()))


def fit(backend, folder: Path, ckpt=None, save_at=None):
    pl.seed_everything(0)
    datamodule = SegmentationDataModule(None, BOTH, batch_size=BATCH, base_size=80, crop_size=64, seed=0)
    datamodule.setup("fit")
    module = LSegModule(labels=datamodule.labels, batch_size=BATCH, backend=backend, **NET)
    record = Record(save_at)
    record.path = folder / "cut.ckpt"
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=pl.loggers.CSVLogger(folder, name="log"),
                         callbacks=[record, Interruptible()], enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=False if ckpt else None)
    return record, datamodule, Path(trainer.logger.log_dir) / "metrics.csv"


BACKENDS = ["torch", pytest.param("mindspore", marks=pytest.mark.slow)]
RUNS = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    def get(backend):
        if backend not in RUNS:
            RUNS[backend] = fit(backend, tmp_path_factory.mktemp(backend), save_at=CUT)
        return RUNS[backend]

    yield get
    RUNS.clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_step_is_scored_with_its_datasets_label_set(runs, backend):
    record, datamodule, _ = runs(backend)
    assert len(record.steps) == STEPS
    counts = [len(labels) for labels in datamodule.labels.values()]
    assert {s["source"][0] for s in record.steps} == {0, 1}
    schedule = MixtureSampler([len(d) for d in datamodule.trainsets], 0, BATCH).schedule(0)
    for step, (source, keys) in zip(record.steps, schedule):
        assert step["source"] == [source] * BATCH and step["channels"] == counts[source]
        # the images are that dataset's, as the seed scheduled them
        expected = [float(datamodule.trainsets[source][key][0].double().sum()) for key in keys]
        np.testing.assert_allclose(step["sums"], expected, rtol=1e-12)


def rows(path: Path):
    return list(csv.DictReader(open(path)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_logs_each_datasets_metrics_and_their_mean(runs, backend):
    _, _, metrics = runs(backend)
    [row] = [r for r in rows(metrics) if r.get("mIoU")]
    for name in ("mIoU", "pix_acc", "val_loss"):
        each = [float(row[f"{name}/{dataset}"]) for dataset in ("ade20k", "pascal_voc")]
        assert float(row[name]) == pytest.approx(sum(each) / 2, rel=1e-6)
    assert float(row["val_loss/ade20k"]) != float(row["val_loss/pascal_voc"])
    assert {"train_pix_acc/ade20k", "train_pix_acc/pascal_voc", "train_loss"} <= set(row) | set(rows(metrics)[0])


@pytest.mark.slow
def test_the_backends_agree_within_the_parity_bounds(runs):
    torch_losses = [s["loss"] for s in runs("torch")[0].steps]
    ms_losses = [s["loss"] for s in runs("mindspore")[0].steps]
    assert [s["source"] for s in runs("torch")[0].steps] == [s["source"] for s in runs("mindspore")[0].steps]
    assert ms_losses[0] == pytest.approx(torch_losses[0], rel=1e-4)
    np.testing.assert_allclose(ms_losses, torch_losses, rtol=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_a_resumed_run_repeats_the_uninterrupted_losses(runs, backend, tmp_path):
    """From the state before step CUT (mid-epoch), as Ctrl-C leaves it: the same datasets, batches and losses."""
    whole, _, _ = runs(backend)
    resumed, _, _ = fit(backend, tmp_path, ckpt=whole.path)
    assert len(resumed.steps) == STEPS - CUT
    for mine, theirs in zip(resumed.steps, whole.steps[CUT:]):
        assert mine["source"] == theirs["source"] and mine["sums"] == theirs["sums"]
    np.testing.assert_allclose([s["loss"] for s in resumed.steps], [s["loss"] for s in whole.steps[CUT:]],
                               rtol=1e-6)


@pytest.mark.slow
def test_two_processes_see_the_global_batches_of_one_process_of_twice_the_batch(tmp_path):
    flags = ["--dataset", BOTH, "--max_steps", "4", "--base_size", "80", "--crop_size", "64", *DDP_TINY]
    run(tmp_path, "two", ["--exp_name", "two", "--devices", "2", "--batch_size", "2", *flags])
    run(tmp_path, "one", ["--exp_name", "one", "--devices", "1", "--batch_size", "4", *flags])
    [one], two = records(tmp_path, "one", 1), records(tmp_path, "two", 2)
    assert set(one["sources"][:, 0]) == {0, 1}  # both datasets within the 4 steps
    for rank in two:
        np.testing.assert_array_equal(rank["sources"], one["sources"][:, :2])
    np.testing.assert_allclose(np.concatenate([two[0]["image_sums"], two[1]["image_sums"]], axis=1),
                               one["image_sums"], rtol=1e-12)
