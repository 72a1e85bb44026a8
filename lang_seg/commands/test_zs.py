"""Zero-shot (and few-shot) LSeg on PASCAL-5i, COCO-20i and FSS-1000: upstream lang-seg's test_lseg_zs.py flags,
on the torch or the MindSpore backend.

    # upstream's README commands, as written (plus --backend)
    python test_lseg_zs.py --backbone clip_resnet101 --module clipseg_DPT_test_v2 --dataset pascal \\
        --widehead --no-scaleinv --arch_option 0 --ignore_index 255 --fold 0 --nshot 0 \\
        --weights checkpoints/pascal_fold0.ckpt --datapath ../Datasets_HSN --backend mindspore
    python test_lseg_zs.py --backbone clip_vitl16_384 --dataset fss --fold 0 --nshot 0 --weights checkpoints/fss_l16.ckpt
    # the bundled tiny FSS-1000-layout set, small pictures
    python test_lseg_zs.py --dataset fss --weights CKPT --img-size 96

Each episode scores one image on ["others", class] (upstream's net(x, class_info)); the argmax is the
foreground. mIoU (the mean over the fold's classes of the foreground IoU) and FB-IoU are upstream's
(fewshot_data/common/evaluation.py, logger.py; lang_seg/fewshot.py), shown as they run; the result line
is upstream's ("Fold 0, 0-shot ==> mIoU: ..."), appended with the weights' path to
logs/fewshot/log_fewshot-test_nshot<N>_<benchmark>.txt as upstream does, and written as JSON beside it
with the per-class IoUs. Episodes are upstream's: the same lists, drawn from the same seeded generator
(upstream's fix_randseed(0)); LSeg never looks at the support images, so they are drawn, not read.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from lang_seg.errors import LangSegError, cli_errors
from lang_seg.fewshot import UPSTREAM_DATAPATH

NO_EFFECT = "no effect (accepted for upstream's command lines)"
LOG_DIR = Path("logs") / "fewshot"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    # upstream's flags
    p.add_argument("--model", default="encnet", help=NO_EFFECT)
    p.add_argument("--backbone", default=None, help="override the checkpoint's backbone (upstream: clip_resnet101 "
                   "for PASCAL and COCO, clip_vitl16_384 or clip_resnet101 for FSS)")
    p.add_argument("--dataset", default=None,
                   help="the benchmark, as upstream reads it (its --benchmark is overwritten by --dataset)")
    for flag, kind, default in (("--workers", int, 16), ("--base-size", int, 520), ("--crop-size", int, 480),
                                ("--se-weight", float, 0.2), ("--batch-size", int, 16), ("--test-batch-size", int, 16)):
        p.add_argument(flag, type=kind, default=default, help=NO_EFFECT)
    p.add_argument("--train-split", default="train", help=NO_EFFECT)
    for flag in ("--se-loss", "--no-val", "--eval", "--test-val", "--widehead", "--widehead_hr"):
        p.add_argument(flag, action="store_true", help=NO_EFFECT)
    p.add_argument("--no-scaleinv", dest="scale_inv", action="store_false", help=NO_EFFECT)
    p.add_argument("--no-strict", dest="strict", action="store_false", help=NO_EFFECT + " (loading is strict)")
    p.add_argument("--aux", action="store_true", help="not supported: LSeg has no auxiliary head")
    p.add_argument("--acc-bn", action="store_true", help="not supported: BatchNorm statistics come from the checkpoint")
    p.add_argument("--no-cuda", action="store_true", help="run on the CPU (same as --device cpu)")
    p.add_argument("--seed", type=int, default=1, help=NO_EFFECT + " (upstream reseeds episodes with 0: --episode-seed)")
    p.add_argument("--weights", default=None, help="zero-shot checkpoint (upstream's pascal_fold*, coco_fold*, fss_*, "
                   "or this project's, either backend)")
    p.add_argument("--module", default="", help=NO_EFFECT + " (upstream's README passes clipseg_DPT_test_v2)")
    p.add_argument("--ignore_index", type=int, default=-1, help=NO_EFFECT + " (scoring ignores PASCAL's 255 boundaries)")
    p.add_argument("--jobname", default="default", help=NO_EFFECT)
    p.add_argument("--use_pretrained", default="True", help=NO_EFFECT + " (the weights come from --weights)")
    p.add_argument("--arch_option", type=int, default=0, help=NO_EFFECT + ": the zero-shot nets have no head block")
    p.add_argument("--activation", choices=["relu", "lrelu", "tanh"], default="relu", help=NO_EFFECT)
    p.add_argument("--nshot", type=int, default=1, help="support images an episode draws (0: zero-shot; LSeg "
                   "never reads them, so the score changes only through the episodes drawn)")
    p.add_argument("--fold", type=int, default=0, help="0..3 (FSS-1000 has no folds)")
    p.add_argument("--nworker", type=int, default=0, help="data loading processes")
    p.add_argument("--bsz", type=int, default=1, help="episodes a batch")
    p.add_argument("--benchmark", default=None,
                   help="pascal (default), coco or fss (c2p: listed by upstream, never built)")
    p.add_argument("--datapath", default=None, help=f"folder in HSNet's Datasets_HSN layout (default {UPSTREAM_DATAPATH}, "
                   "as upstream; for fss without it: the bundled tiny set)")
    # this project's flags
    p.add_argument("--backend", choices=["torch", "mindspore"], default="torch")
    p.add_argument("--device", default="cpu", help="cpu, cuda/gpu or gpu:N")
    p.add_argument("--ms-mode", choices=["graph", "eager"], default=None, help="MindSpore execution (default graph)")
    p.add_argument("--img-size", type=int, default=480, help="side the pictures are resized to (upstream's 480)")
    p.add_argument("--episode-seed", type=int, default=0, help="seeds the episodes (upstream: fix_randseed(0))")
    p.add_argument("--episodes", type=int, default=None, help="score only the first N episodes (default: all)")
    p.add_argument("--trust-checkpoint", dest="trust", action="store_true",
                   help="load a torch file holding objects other than tensors (runs code from it: trusted files only)")
    return p


def benchmark_of(args) -> str:
    """Upstream sets ``args.benchmark = args.dataset``: --dataset wins when given."""
    from lang_seg.fewshot import BENCHMARKS

    name = args.dataset or args.benchmark or "pascal"
    if args.dataset and args.benchmark and args.benchmark != args.dataset:
        raise LangSegError(f"--dataset {args.dataset} and --benchmark {args.benchmark} disagree: pass one of them")
    if name == "c2p":
        raise LangSegError("benchmark c2p (COCO to PASCAL) is among upstream's --benchmark choices but upstream has "
                           "no reader or split lists for it: choose pascal, coco or fss")
    if name not in BENCHMARKS:
        raise LangSegError(f"{name!r} is not a few-shot benchmark: choose pascal, coco or fss "
                           "(test_lseg.py evaluates ADE20K)")
    return name


def check_flags(args) -> None:
    from lang_seg.fewshot import check_fold, check_shots

    check_fold(args.fold)
    check_shots(args.nshot)
    if args.aux:
        raise LangSegError("--aux is not supported: LSeg has no auxiliary head")
    if args.acc_bn:
        raise LangSegError("--acc-bn is not supported: BatchNorm statistics come from the checkpoint")
    if args.weights is None:
        raise LangSegError("pass --weights CKPT, a zero-shot LSeg checkpoint (upstream's pascal_fold0.ckpt, ...)")
    if not os.path.isfile(args.weights):
        raise LangSegError(f"checkpoint {args.weights} does not exist: check --weights")
    for flag in ("bsz", "img_size"):
        if getattr(args, flag) < 1:
            raise LangSegError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.episodes is not None and args.episodes < 1:
        raise LangSegError(f"--episodes must be at least 1, got {args.episodes}")


def read(args):
    """``(checkpoint, options)`` of a zero-shot checkpoint; an LSegNet one (ADE20K-style) is refused in one line."""
    from lang_seg.checkpoint import checkpoint_kind, infer_options, read_checkpoint

    ckpt = read_checkpoint(args.weights, args.trust)
    if checkpoint_kind(ckpt) is False:
        raise LangSegError(f"checkpoint {args.weights} holds LSegNet, not one of upstream's zero-shot networks (its "
                           "options or its head block say so): evaluate it with test_lseg.py, or pass a zero-shot "
                           "checkpoint")
    options = infer_options(ckpt.state, ckpt.hyper_parameters, backbone=args.backbone, zero_shot=True)
    patch = options.config.patch_size
    if args.img_size % patch:
        raise LangSegError(f"--img-size {args.img_size} is not a multiple of {patch}, the patch size (or stride) of "
                           f"{options.backbone}: use e.g. {max(patch, round(args.img_size / patch) * patch)}")
    return ckpt, options


def load(args, ckpt):
    import lang_seg

    device = "cpu" if args.no_cuda else args.device
    return lang_seg.load_model(ckpt, backend=args.backend, backbone=args.backbone, device=device,
                               ms_mode=args.ms_mode, zero_shot=True)


def batches(dataset, size: int, workers: int, limit: int):
    """Episodes ``size`` at a time as numpy dicts (through a DataLoader with ``workers`` processes)."""
    import numpy as np

    if workers > 0:
        import torch

        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(limit)), batch_size=size,
                                             num_workers=workers)
        for batch in loader:
            yield {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in batch.items()}
        return
    for start in range(0, limit, size):
        items = [dataset[i] for i in range(start, min(start + size, limit))]
        yield {k: (np.stack([it[k] for it in items]) if isinstance(items[0][k], np.ndarray) else [it[k] for it in items])
               for k in items[0]}


def evaluate(args, benchmark: str) -> int:
    import warnings

    from tqdm import tqdm

    from lang_seg.data.fewshot import build_dataset
    from lang_seg.fewshot import BENCHMARKS, FewShotMetric, episode_predictions

    ckpt, options = read(args)
    from lang_seg.data.fewshot import resolve_datapath

    datapath = resolve_datapath(benchmark, args.datapath)
    with warnings.catch_warnings(record=True) as notes:  # the dataset is checked before the model is built
        warnings.simplefilter("always")
        dataset = build_dataset(benchmark, datapath, args.fold, "test", args.nshot, img_size=args.img_size,
                                norm=options.config.norm, seed=args.episode_seed, load_support=False)
    for note in notes:
        print(f"note: {note.message}")
    model = load(args, ckpt)
    total = len(dataset) if args.episodes is None else min(args.episodes, len(dataset))
    title = BENCHMARKS[benchmark].title
    print(f"LSeg {model.options.backbone} ({type(model.net).__name__}) on {model.backend} ({model.device}); {title} "
          f"fold {args.fold}, {args.nshot}-shot: {total} episodes of {len(dataset)}, {args.img_size}x{args.img_size}, "
          f"{len(dataset.class_ids)} classes")
    metric = FewShotMetric(benchmark, dataset.class_ids)
    start = time.perf_counter()
    bar = tqdm(total=total, dynamic_ncols=True)
    for batch in batches(dataset, args.bsz, args.nworker, total):
        prediction = episode_predictions(model, batch["query_img"], batch["class_name"])
        ignore = batch["query_ignore_idx"] if benchmark == "pascal" else None  # upstream's rule
        metric.add(prediction, batch["query_mask"], batch["class_id"], ignore)
        bar.update(len(prediction))
        bar.set_description(f"mIoU: {metric.miou():5.2f} | FB-IoU: {metric.fb_iou():5.2f}")
    bar.close()
    elapsed = time.perf_counter() - start
    return report(args, benchmark, model, dataset, metric, total, elapsed)


def report(args, benchmark, model, dataset, metric, episodes: int, elapsed: float) -> int:
    from lang_seg.files import append_log

    miou, fb_iou = metric.miou(), metric.fb_iou()
    line = f"Fold {args.fold}, {args.nshot}-shot ==> mIoU: {miou:5.2f} \t FB-IoU: {fb_iou:5.2f}"
    print(line)
    iou = metric.class_iou()
    per_class = [{"class_id": c, "class": dataset.labels[c], "iou": float(iou[1, k] * 100),
                  "background_iou": float(iou[0, k] * 100), "episodes": int(metric.episodes[c])}
                 for k, c in enumerate(dataset.class_ids)]
    cells = [f"{row['class'][:18]:<18} {row['iou']:6.2f}" for row in per_class if row["episodes"]]
    for row in range(0, len(cells), 4):
        print("  " + "   ".join(cells[row:row + 4]))
    unasked = sum(1 for row in per_class if not row["episodes"])
    if unasked:
        print(f"  ({unasked} of the fold's classes were in no episode: IoU 0, as upstream counts them)")
    print(f"{episodes} episodes in {elapsed:.1f} s ({elapsed / max(episodes, 1):.2f} s an episode)")

    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    settings = dict(weights=os.path.abspath(args.weights), backend=model.backend, backbone=model.options.backbone,
                    device=model.device, benchmark=benchmark, fold=args.fold, nshot=args.nshot,
                    datapath=os.path.abspath(dataset.datapath), img_size=args.img_size, episodes=episodes,
                    episode_seed=args.episode_seed, bsz=args.bsz)
    log = LOG_DIR / f"log_fewshot-test_nshot{args.nshot}_{benchmark}.txt"
    record = dict(time=stamp, seconds=round(elapsed, 3), miou=miou, fb_iou=fb_iou, **settings, per_class=per_class)
    text = ("# " + stamp + " " + " ".join(f"{k}={v}" for k, v in settings.items()) + "\n"
            + f"{args.weights}\n{line}\n")  # upstream's two lines
    append_log(log, text, record)
    print(f"appended to {log}; wrote {log.with_suffix('.json')}")
    return 0


@cli_errors
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    benchmark = benchmark_of(args)
    check_flags(args)
    return evaluate(args, benchmark)


if __name__ == "__main__":
    sys.exit(main())
