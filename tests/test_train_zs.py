"""train_lseg_zs.py as users start it (upstream's LSegModuleZS recipe): trains on the bundled FSS-1000-layout set
from another folder, on both backends with the same losses, writes upstream-layout checkpoints that
test_lseg_zs.py and lang_seg.load_model read back; each image scored on its own episode; bad input in one line."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lang_seg
from lang_seg.commands import train_zs
from lang_seg.data.fewshot.common import read_labels
from lang_seg.fewshot import FewShotMetric, classify_prediction, episode_labels
from lang_seg.modules.lseg_module_zs import FewShotAreas, LSegModuleZS, episode_batch
from lang_seg.names import is_unused
from lang_seg.safe_load import load_torch_file

from .helpers import FIXTURES, images

ROOT = Path(__file__).resolve().parent.parent
# a tiny ResNet zero-shot model (upstream's fixture layout: features 16) on the bundled set, one epoch:
# 15 steps of 2 episodes (4 images), then validation on the 20 val episodes
TINY = ["--dataset", "fss", "--backbone", "tiny_resnet", "--num_features", "16", "--no-pretrained", "--img_size", "64",
        "--batch_size", "2", "--max_epochs", "1", "--num_workers", "0", "--seed", "0"]


def run_script(script, args, cwd):
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1200)


def train(backend, cwd, name="zs"):
    """``(losses per step, last.ckpt, the process's result, metrics.csv rows)`` of a run started in ``cwd``."""
    result = run_script("train_lseg_zs.py", ["--exp_name", name, *TINY, "--backend", backend], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    run = cwd / "checkpoints" / name / "version_0"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = np.array([float(r["train_loss"]) for r in rows if r.get("train_loss")])
    return losses, run / "checkpoints" / "last.ckpt", result, rows


def test_trains_from_another_folder_and_writes_upstream_layout_checkpoints(tmp_path):
    losses, last, out, rows = train("torch", tmp_path)
    assert len(losses) == 15 and np.isfinite(losses).all()
    assert "note: FSS-1000 under" in out.stdout  # the bundled copy holds 3 of the 520 training categories
    val = [r for r in rows if r.get("fewshot_val_miou")]
    assert len(val) == 1 and 0 <= float(val[0]["fewshot_val_miou"]) <= 100 and float(val[0]["val_loss"]) > 0
    assert [r for r in rows if r.get("fewshot_trn_miou")]
    best = list(last.parent.glob("result-epoch=0-fewshot_val_miou=*.ckpt"))
    assert len(best) == 1 and last.is_file()
    raw = load_torch_file(str(last))
    assert raw["hyper_parameters"]["zero_shot"] is True and raw["hyper_parameters"]["dataset"] == "fss"
    # upstream's LSegModuleZS layout: net.<name> with upstream's names and shapes (its CLIP image tower aside)
    upstream = load_torch_file(str(FIXTURES / "upstream_zs_tiny_resnet.ckpt"))["state_dict"]
    expected = {k: tuple(v.shape) for k, v in upstream.items() if not is_unused(k[len("net."):])}
    assert {k: tuple(v.shape) for k, v in raw["state_dict"].items()} == expected
    # back through test_lseg_zs.py, from the same folder
    result = run_script("test_lseg_zs.py", ["--dataset", "fss", "--nshot", "0", "--img-size", "64", "--weights",
                                            str(last)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LSeg tiny_resnet (LSegRNNetZS) on torch" in result.stdout
    record = json.loads((tmp_path / "logs/fewshot/log_fewshot-test_nshot0_fss.json").read_text())
    assert record["episodes"] == 30 and 0 <= record["miou"] <= 100


@pytest.mark.slow
def test_mindspore_training_follows_torch_and_its_checkpoint_evaluates(tmp_path):
    (tmp_path / "t").mkdir(), (tmp_path / "m").mkdir()
    torch_losses, _, _, _ = train("torch", tmp_path / "t")
    ms_losses, last, out, rows = train("mindspore", tmp_path / "m")
    assert len(ms_losses) == len(torch_losses) == 15
    # LSegNet training's bounds (tests/test_training_bridge.py): the first step's loss, then the trajectory
    assert abs(ms_losses[0] - torch_losses[0]) <= 1e-4 * torch_losses[0]
    assert np.max(np.abs(ms_losses - torch_losses) / torch_losses) <= 1e-2
    assert "MindSpore LSegNet (tiny_resnet) on cpu" in out.stderr  # Lightning's info line
    assert [r for r in rows if r.get("fewshot_val_miou")]
    model = lang_seg.load_model(str(last))  # the MindSpore run's checkpoint, on torch
    assert type(model.net).__name__ == "LSegRNNetZS" and model.options.zero_shot
    figures = {}
    for backend in ("torch", "mindspore"):
        result = run_script("test_lseg_zs.py", ["--dataset", "fss", "--nshot", "0", "--img-size", "64", "--weights",
                                                str(last), "--backend", backend], tmp_path / "m")
        assert result.returncode == 0, result.stderr[-3000:]
        record = json.loads((tmp_path / "m/logs/fewshot/log_fewshot-test_nshot0_fss.json").read_text())
        figures[backend] = (record["miou"], record["fb_iou"])
    assert figures["mindspore"] == pytest.approx(figures["torch"], abs=1e-3)


def test_each_image_is_scored_on_its_own_episode():
    """Text features (N, 2, C), one pair an image, give what each image gives alone on its pair (upstream's
    net(x, class_info)), on both backends."""
    import mindspore as ms
    from mindspore import ops

    torch_model = lang_seg.load_model(None, backbone="tiny_vitb32", seed=0, zero_shot=True, features=16)
    ms_model = lang_seg.load_model(None, backbone="tiny_vitb32", seed=0, zero_shot=True, features=16,
                                   backend="mindspore")
    x = images((2, 3, 64, 64))
    pairs = [episode_labels("dog"), episode_labels("tomato")]
    alone = np.concatenate([torch_model.logits(x[i:i + 1], pair) for i, pair in enumerate(pairs)])
    with torch.no_grad():
        text = torch.stack([torch_model.text_features(pair) for pair in pairs])
        together = torch_model.net(torch.from_numpy(x), text).numpy()
    assert np.abs(together - alone).max() <= 1e-5 * alone.std()
    text = ops.stack([ms_model.text_features(pair) for pair in pairs])
    together_ms = ms_model.forward_tensor(ms.from_numpy(x), text).asnumpy()
    assert np.abs(together_ms - alone).max() <= 1e-4 * alone.std()
    swapped = torch_model.logits(x[:1], pairs[1])  # the other pair scores the image differently
    assert np.abs(swapped - alone[:1]).max() > 1e-2 * alone.std()


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_episode_text_is_each_images_pair(backend):
    """The module's text features for a batch: image i's ``["others", label of class_ids[i]]``, encoded by the
    backend's own text tower (each class once a run)."""
    module = LSegModuleZS(dataset="fss", backbone="tiny_resnet", num_features=16, pretrained=False, backend=backend)
    ids = torch.tensor([523, 760, 523])
    if backend == "mindspore":
        module.configure_model()
        text = module.episode_text(ids).asnumpy()
        pairs = [module.bridge.model.text_features(episode_labels(module.class_names[int(i)])).asnumpy() for i in ids]
    else:
        text = module.episode_text(ids).numpy()
        with torch.no_grad():
            pairs = [module.net.encode_text(episode_labels(module.class_names[int(i)])).numpy() for i in ids]
    assert module.class_names == read_labels("fss")  # the readers' class_name: upstream's label file
    assert text.shape == (3, 2, pairs[0].shape[-1])
    assert np.abs(text - np.stack(pairs)).max() <= 1e-5 * np.abs(text).max()
    assert sorted(module._text_rows, key=str) == [523, 760, None]


def test_a_batch_is_upstreams_supports_then_queries():
    n, s = 3, 8
    batch = {"support_imgs": torch.rand(n, 1, 3, s, s), "support_masks": torch.randint(0, 2, (n, 1, s, s)).float(),
             "support_ignore_idxs": torch.zeros(n, 1, s, s), "query_img": torch.rand(n, 3, s, s),
             "query_mask": torch.randint(0, 2, (n, s, s)).float(), "query_ignore_idx": torch.ones(n, s, s),
             "class_id": torch.tensor([4, 9, 4])}
    img, target, ignore, classes = episode_batch(batch, training=True)
    assert torch.equal(img, torch.cat([batch["support_imgs"][:, 0], batch["query_img"]]))
    assert torch.equal(target, torch.cat([batch["support_masks"][:, 0], batch["query_mask"]]).long())
    assert ignore[:n].sum() == 0 and ignore[n:].min() == 1 and classes.tolist() == [4, 9, 4, 4, 9, 4]
    img, target, ignore, classes = episode_batch(batch, training=False)
    assert torch.equal(img, batch["query_img"]) and classes.tolist() == [4, 9, 4] and target.dtype == torch.long


def test_areas_sum_as_upstreams_average_meter():
    rng = np.random.RandomState(0)
    areas, reference = FewShotAreas("pascal"), FewShotMetric("pascal", [5, 6, 7, 8, 9])
    for _ in range(3):
        pred, target = rng.randint(0, 2, (4, 16, 16)), rng.randint(0, 2, (4, 16, 16))
        ignore = (rng.rand(4, 16, 16) < 0.1) & (target == 0)
        classes = rng.choice([5, 6, 7, 8, 9], 4)
        areas.update(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(classes),
                     torch.from_numpy(ignore.astype(np.float32)))
        reference.update(*classify_prediction(pred, target, ignore), classes)
    assert areas.compute([5, 6, 7, 8, 9]) == pytest.approx((reference.miou(), reference.fb_iou()), abs=1e-9)


def test_mindspore_module_is_the_zero_shot_module_with_the_backend_in_front():
    module = LSegModuleZS(dataset="fss", backbone="tiny_resnet", num_features=16, pretrained=False,
                          backend="mindspore")
    names = [c.__name__ for c in type(module).__mro__]
    assert names[:4] == ["MindSporeLSegModuleZS", "MindSporeEpisodes", "MindSporeBackend", "LSegModuleZS"]
    assert module.options.zero_shot and "pretrained.layer4.0.conv1.weight" in module._waiting


@pytest.mark.parametrize("args, message", [
    (["--fold", "4"], "fold 4 does not exist: the benchmarks have folds 0 to 3"),
    (["--dataset", "pascal", "--data_path", "{empty}"], "PASCAL-5i not found under {empty}: expected "
     "VOC2012/JPEGImages/*.jpg and VOC2012/SegmentationClassAug/*.png"),
    (["--dataset", "ade20k"], "unknown benchmark 'ade20k': choose one of pascal, coco, fss"),
    (["--finetune_mode"], "--finetune_mode (upstream's fine-tuning on the tested classes' supports) is not available"),
    (["--use_pretrained", "clip_fixed"], "--use_pretrained clip_fixed (upstream's frozen ViT) is not available"),
    (["--batch_size", "40"], "training split under"),
    (["--backbone", "tiny_vitb32", "--img_size", "80"], "picture size 80 is not a multiple of 32"),
])
def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--exp_name", "bad", *TINY[:-2], *[a.format(empty=empty) for a in args]]
    assert train_zs.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message.format(empty=empty) in err, err
    assert not (tmp_path / "checkpoints").exists()  # nothing written


def test_bad_input_as_a_process(tmp_path):
    result = run_script("train_lseg_zs.py", ["--exp_name", "bad", "--fold", "-1"], tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: fold -1 does not exist: the benchmarks have folds 0 to 3"]
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_two_processes_train_with_ddp(tmp_path, backend):
    """Lightning's DDP on CPU (gloo) as train_lseg.py runs it: each process takes half of every global batch
    (30 episodes, 2 processes of 2: 7 steps an epoch), the few-shot areas are summed over both for validation."""
    from .ddp_helpers import environment, free_port

    result = subprocess.run([sys.executable, str(ROOT / "train_lseg_zs.py"), "--exp_name", "ddp", *TINY,
                             "--backend", backend, "--accelerator", "cpu", "--devices", "2"], cwd=tmp_path,
                            env=environment(MASTER_PORT=free_port()), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "checkpoints" / "ddp" / "version_0"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len([r for r in rows if r.get("train_loss")]) == 7
    [val] = [r for r in rows if r.get("fewshot_val_miou")]
    assert 0 <= float(val["fewshot_val_miou"]) <= 100 and (run / "checkpoints" / "last.ckpt").is_file()
