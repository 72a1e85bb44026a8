"""Evaluate LSeg on a dataset, or segment pictures with your own labels: upstream lang-seg's
test_lseg.py flags, on the torch or the MindSpore backend.

    # pixel accuracy and mIoU (upstream's 6-scale flipped sliding-window evaluation) on ADE20K val
    python test_lseg.py --backbone clip_vitl16_384 --eval --dataset ade20k --data-path ../datasets \\
        --weights CKPT --widehead --no-scaleinv --backend mindspore
    # the predicted masks of the val split as palette PNGs (the dataset's own mask values: ADE20K ids 1..150)
    python test_lseg.py --weights CKPT --test-val --out outputs/masks
    # one picture, a typed label set (also: a file with one label per line, or 'default' = ADE20K's 150)
    python test_lseg.py --weights CKPT --image cat.jpeg --label_src 'plant,grass,cat,stone,other' --out outputs/

--weights: a lang-seg checkpoint of either backend, upstream's, or a MindSpore
.ckpt. With --eval the figures are printed and appended to
logs/log_test_<jobname>_<dataset>.txt as upstream does (one comment line, then
upstream's two lines: pixAcc/mIoU and the per-class IoUs in class order, then
the per-class IoUs with their class names), and written as JSON beside it. mIoU
is upstream's: the mean over all classes, absent ones counting 0 (see
lang_seg/metrics.py). Without --eval, or with --test-val, the predicted masks
are written to --out. With --image, each picture gives <out>/<name>_segmentation.png
(the picture, the colour mask with a legend, one cut-out per label present) and
<out>/<name>_labels.png (the label map, pixel value = label index, imgviz/VOC palette).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from lang_seg.errors import LangSegError, cli_errors

DEFAULT_OUT = "outputs/test_lseg"
NO_EFFECT = "no effect (accepted for upstream's command lines)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    # upstream's flags
    p.add_argument("--model", default="encnet", help=NO_EFFECT)
    p.add_argument("--backbone", default=None,
                   help="override the checkpoint's backbone (default: the checkpoint's; upstream: clip_vitl16_384)")
    p.add_argument("--dataset", default="ade20k",
                   help="the dataset to score, with its labels, sizes and scales (docs/datasets.md lists them)")
    p.add_argument("--workers", "--num_workers", dest="workers", type=int, default=None,
                   help="data-loading processes (default: upstream's 16, at most the machine's cores)")
    p.add_argument("--base-size", type=int, default=None, help="long side at scale 1.0 (default: the dataset's)")
    p.add_argument("--crop-size", type=int, default=None,
                   help="window side, a multiple of the patch size (default: the dataset's)")
    p.add_argument("--train-split", default="train", help=NO_EFFECT + " (upstream: only with --acc-bn)")
    p.add_argument("--aux", action="store_true", help="not supported: LSeg has no auxiliary head")
    p.add_argument("--se-loss", action="store_true", help=NO_EFFECT)
    p.add_argument("--se-weight", type=float, default=0.2, help=NO_EFFECT)
    p.add_argument("--batch-size", type=int, default=16, help=NO_EFFECT)
    p.add_argument("--test-batch-size", type=int, default=16,
                   help=NO_EFFECT + ": images go one at a time, their windows --max-batch at a time")
    p.add_argument("--no-cuda", action="store_true", help="run on the CPU (same as --device cpu)")
    p.add_argument("--seed", type=int, default=1, help=NO_EFFECT + " (the evaluation is deterministic)")
    p.add_argument("--weights", default=None, help="checkpoint to test (torch/Lightning, upstream's, or MindSpore)")
    p.add_argument("--eval", action="store_true", help="compute pixel accuracy and mIoU")
    p.add_argument("--export", default=None, help="write the loaded weights to EXPORT.pth (a lang-seg checkpoint) and stop")
    p.add_argument("--acc-bn", action="store_true", help="not supported (upstream's own code for it does not run)")
    p.add_argument("--test-val", action="store_true", help="write the predicted masks of the split to --out")
    p.add_argument("--no-val", action="store_true", help=NO_EFFECT)
    p.add_argument("--module", default="lseg", help="lseg (zero-shot checkpoints: test_lseg_zs.py)")
    p.add_argument("--data-path", "--data_path", dest="data_path", default=None,
                   help="folder holding ADEChallengeData2016/, relative to the working directory ('bundled': "
                        "the 6 validation images bundled with the package); needed unless --image")
    p.add_argument("--no-scaleinv", dest="scale_inv", action="store_false", help=NO_EFFECT + ", as upstream")
    p.add_argument("--widehead", action="store_true", help=NO_EFFECT + ", as upstream")
    p.add_argument("--widehead_hr", action="store_true", help=NO_EFFECT + ", as upstream")
    p.add_argument("--ignore_index", type=int, default=-1, help="target value of unlabelled pixels")
    p.add_argument("--label_src", default="default",
                   help="labels for --image: 'a,b,c', a file with one label per line, or 'default' (ADE20K's 150)")
    p.add_argument("--jobname", default="default", help="names the log file")
    p.add_argument("--no-strict", dest="strict", action="store_false",
                   help=NO_EFFECT + " (loading is strict; CLIP's unused image tower is skipped with a warning)")
    p.add_argument("--arch_option", type=int, default=None, help="head option 0/1/2 (default: the checkpoint's, else 0)")
    p.add_argument("--block_depth", type=int, default=None, help="(default: the checkpoint's, else 0)")
    p.add_argument("--activation", choices=["relu", "lrelu", "tanh"], default=None,
                   help="(default: the checkpoint's; needed with a head block when the checkpoint has no options)")
    p.add_argument("--readout", choices=["ignore", "add", "project"], default=None,
                   help="ViT readout (default: the checkpoint's; 'project' is seen in the weights, 'ignore'/'add' are not)")
    # this project's flags
    p.add_argument("--backend", choices=["torch", "mindspore"], default="torch")
    p.add_argument("--device", default="cpu", help="cpu, cuda/gpu or gpu:N")
    p.add_argument("--ms-mode", "--ms_mode", dest="ms_mode", choices=["graph", "eager"], default=None,
                   help="MindSpore execution: graph (compiled, the default) or eager (op by op, for debugging)")
    p.add_argument("--scales", type=parse_scales, default=None,
                   help="comma-separated, e.g. '1.0' (default: the dataset's, upstream's: docs/datasets.md)")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="do not add the mirrored image's scores")
    p.add_argument("--max-batch", type=int, default=2,
                   help="windows per forward call (default 2: a window and its mirror image; more is faster "
                        "where memory allows: clip_vitl16_384 on CPU needs ~0.6 GB (torch) or ~3.3 GB "
                        "(MindSpore) per window)")
    p.add_argument("--split", choices=["val", "train", "trainval"], default="val", help="dataset split to evaluate")
    p.add_argument("--image", nargs="+", default=None, help="segment these pictures with --label_src instead")
    p.add_argument("--out", default=None, help=f"output folder for masks and pictures (default {DEFAULT_OUT})")
    p.add_argument("--trust-checkpoint", dest="trust", action="store_true",
                   help="load a torch file holding objects other than tensors (runs code from it: trusted files only)")
    return p


def parse_scales(text: str):
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must be comma-separated numbers, got {text!r}") from None
    if not scales or any(not s > 0 for s in scales):
        raise argparse.ArgumentTypeError(f"scales must be positive numbers, got {text!r}")
    return scales


def check_flags(args) -> None:
    if args.aux:
        raise LangSegError("--aux is not supported: LSeg has no auxiliary head")
    if args.acc_bn:
        raise LangSegError("--acc-bn is not supported: BatchNorm statistics come from the checkpoint")
    if args.module != "lseg":
        raise LangSegError(f"--module {args.module} is not available: test_lseg.py runs 'lseg' "
                           "(zero-shot checkpoints: test_lseg_zs.py)")
    if args.weights is None:
        raise LangSegError(
            "pass --weights CKPT (a lang-seg checkpoint; a quick one: train_lseg.py --exp_name tiny ... "
            "--no-pretrained); 'python -m lang_seg.commands.demo' runs without one"
        )
    if not os.path.isfile(args.weights):
        raise LangSegError(f"checkpoint {args.weights} does not exist: check --weights")
    if args.image is None and args.label_src != "default":
        raise LangSegError("--label_src sets the labels of --image; evaluating a dataset uses its own classes")
    if args.image is None and args.export is None and args.data_path is None:
        raise LangSegError("pass --data-path FOLDER (the folder holding ADEChallengeData2016/), or --data-path "
                           "bundled for the 6 validation images bundled with the package")
    if args.workers is not None and args.workers < 0:
        raise LangSegError(f"--workers must be 0 or more, got {args.workers}")
    if args.max_batch < 1:
        raise LangSegError(f"--max-batch must be at least 1, got {args.max_batch}")
    out = Path(args.out or DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise LangSegError(f"--out {out} is a file: pass a folder")


def load(args):
    import lang_seg

    device = "cpu" if args.no_cuda else args.device
    model = lang_seg.load_model(args.weights, backend=args.backend, backbone=args.backbone, device=device,
                                ms_mode=args.ms_mode, arch_option=args.arch_option, block_depth=args.block_depth,
                                activation=args.activation, readout=args.readout, trust=args.trust)
    if model.options.zero_shot:  # #22: upstream's LSegNetZS / LSegRNNetZS belong to the few-shot benchmarks
        raise LangSegError(f"checkpoint {args.weights} holds one of upstream's zero-shot networks "
                           f"({model.options.backbone}): evaluate it with test_lseg_zs.py")
    return model


def describe(model, evaluator) -> str:
    scales = ", ".join(f"{s:g}" for s in evaluator.scales)
    return (f"LSeg {model.options.backbone} on {model.backend} ({model.device}); scales {scales}"
            f"{', flip' if evaluator.flip else ''}; base size {evaluator.base_size}, crop {evaluator.crop_size}")


def segment_images(args, scales, base_size, crop_size) -> int:
    import numpy as np

    from lang_seg.evaluate import MultiScaleEvaluator
    from lang_seg.images import normalize, read_image, save_palette_png, save_rgb_png, segmentation_figure
    from lang_seg.labels import parse_labels

    labels = parse_labels(args.label_src)
    if len(labels) > 256:
        raise LangSegError(f"{len(labels)} labels: a palette PNG holds at most 256")
    stems = [Path(path).stem for path in args.image]
    if len(set(stems)) < len(stems):
        raise LangSegError("two --image files have the same name: their outputs would overwrite each other")
    pictures = [(path, read_image(path)) for path in args.image]  # every picture is checked before any work
    model = load(args)
    evaluator = MultiScaleEvaluator(model, scales, args.flip, base_size, crop_size, args.max_batch)
    print(describe(model, evaluator))
    out = Path(args.out or DEFAULT_OUT)
    for (path, rgb), stem in zip(pictures, stems):
        start = time.perf_counter()
        label_map = evaluator.predict(normalize(rgb), labels)
        elapsed = time.perf_counter() - start
        save_rgb_png(segmentation_figure(rgb, label_map, labels), out / f"{stem}_segmentation.png")
        save_palette_png(label_map, out / f"{stem}_labels.png")
        h, w = label_map.shape
        print(f"{path}: {w}x{h}, {sum(evaluator.batch_sizes)} windows in {len(evaluator.batch_sizes)} "
              f"forward calls, {elapsed:.2f} s")
        shares = np.bincount(label_map.ravel(), minlength=len(labels)) / label_map.size
        for i in np.flatnonzero(shares):
            print(f"  {labels[i]:<20} {shares[i] * 100:6.2f}% of pixels ({int(round(shares[i] * label_map.size))})")
        print(f"  wrote {out / f'{stem}_segmentation.png'}, {out / f'{stem}_labels.png'}")
    return 0


def evaluate_dataset(args, scales, base_size, crop_size) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from lang_seg.data.registry import get_dataset
    from lang_seg.evaluate import MultiScaleEvaluator
    from lang_seg.files import append_log
    from lang_seg.images import save_palette_png
    from lang_seg.metrics import SegmentationMetric

    from lang_seg.data import default_workers
    from lang_seg.data.bundled import resolve

    data_path = resolve(args.data_path)
    workers = default_workers() if args.workers is None else args.workers
    dataset = get_dataset(args.dataset, root=data_path, split=args.split, mode="testval")
    labels = dataset.labels  # scored with the dataset's own classes
    model = load(args)
    evaluator = MultiScaleEvaluator(model, scales, args.flip, base_size, crop_size, args.max_batch)
    print(describe(model, evaluator))
    print(f"{len(dataset)} images of {data_path} ({args.split})")
    metric = SegmentationMetric(dataset.num_class, args.ignore_index)
    write_masks = args.test_val or not args.eval
    out = Path(args.out or DEFAULT_OUT)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers) if workers > 0 else dataset
    start = time.perf_counter()
    bar = tqdm(loader, total=len(dataset), dynamic_ncols=True)
    for index, (image, target) in enumerate(bar):
        prediction = evaluator.predict(image.numpy(), labels)
        if args.eval:
            metric.update(prediction, target.numpy())
            bar.set_description(f"pixAcc: {metric.pixel_accuracy():.4f}, mIoU: {metric.miou():.4f}")
        if write_masks:  # the dataset's own mask values, as upstream's make_pred (ADE20K: class + 1)
            save_palette_png(dataset.mask_values(prediction), out / (Path(dataset.images[index]).stem + ".png"))
    bar.close()
    elapsed = time.perf_counter() - start
    if write_masks:
        print(f"wrote {len(dataset)} masks to {out}")
    if not args.eval:
        return 0

    summary = metric.summary(labels)
    iou = [row["iou"] for row in summary["per_class"]]
    present = int(np.sum(metric.union > 0))
    print(f"pixAcc: {summary['pix_acc']:.4f}, mIoU: {summary['miou']:.4f} "
          f"(mean over all {len(labels)} classes, as upstream; over the {present} present: {summary['miou_present']:.4f})")
    cells = [f"{name[:18]:<18} {value:.4f}" for name, value, union in zip(labels, iou, metric.union) if union > 0]
    for row in range(0, len(cells), 4):
        print("  " + "   ".join(cells[row:row + 4]))
    if present < len(labels):
        print(f"  (the other {len(labels) - present} classes are in neither the predictions nor the targets: IoU 0)")
    print(f"{len(dataset)} images in {elapsed:.1f} s ({elapsed / len(dataset):.2f} s an image)")

    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    settings = dict(weights=os.path.abspath(args.weights), backend=model.backend, backbone=model.options.backbone,
                    device=model.device, split=args.split, images=len(dataset), scales=list(evaluator.scales),
                    flip=evaluator.flip, base_size=base_size, crop_size=crop_size)
    log_text = (
        f"# {stamp} " + " ".join(f"{k}={v}" for k, v in settings.items()) + "\n"
        + f"dataset {args.dataset} ==> pixAcc: {summary['pix_acc']:.4f}, mIoU: {summary['miou']:.4f}\n"
        + "".join(f"{value:.4f}, " for value in iou) + "\n"
        + "# per-class IoU: " + ", ".join(f"{name}: {value:.4f}" for name, value in zip(labels, iou)) + "\n"
    )
    log = Path("logs") / f"log_test_{args.jobname}_{args.dataset}.txt"
    record = dict(dataset=args.dataset, jobname=args.jobname, time=stamp, seconds=round(elapsed, 3), **settings,
                  **summary)
    append_log(log, log_text, record)
    print(f"appended to {log}; wrote {log.with_suffix('.json')}")
    return 0


@cli_errors
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_flags(args)
    from lang_seg.data.registry import dataset_class

    reader = dataset_class(args.dataset)  # upstream's sizes and scales for it; an unknown name lists the choices
    base_size = args.base_size or reader.BASE_SIZE
    crop_size = args.crop_size or reader.CROP_SIZE
    scales = args.scales or reader.SCALES
    if args.export:
        from lang_seg.checkpoint import save_checkpoint

        model = load(args)
        save_checkpoint(args.export + ".pth", model.state_dict(), model.options)
        print(f"wrote {args.export}.pth")
        return 0
    if args.image:
        return segment_images(args, scales, base_size, crop_size)
    return evaluate_dataset(args, scales, base_size, crop_size)


if __name__ == "__main__":
    sys.exit(main())
