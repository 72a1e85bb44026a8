"""Train zero-shot LSeg on a few-shot benchmark fold's training classes (upstream's LSegModuleZS recipe), on the
torch or the MindSpore backend (``lseg-train-zs`` once installed).

    # PASCAL-5i fold 0 on the ResNet-101 variant (HSNet's Datasets_HSN layout), as upstream's pascal_fold0
    python train_lseg_zs.py --exp_name pascal_fold0 --dataset pascal --fold 0 --data_path ../Datasets_HSN \\
        --backbone clip_resnet101 --batch_size 8 --base_lr 0.004 --max_epochs 4 --backend mindspore
    # offline, in minutes: a tiny model on the bundled FSS-1000-layout set, then its evaluation
    python train_lseg_zs.py --exp_name fss_tiny --dataset fss --backbone tiny_vitb32 --no-pretrained \\
        --img_size 64 --batch_size 2 --max_epochs 1
    python test_lseg_zs.py --dataset fss --img-size 64 --weights CKPT

Each image is scored on its episode's pair ["others", class]; a batch of B episodes trains on 2B images (the
supports, then the queries). Validation scores the queries of the fold's tested classes with upstream's
few-shot mIoU and FB-IoU (fewshot_val_miou, fewshot_val_fb_iou; the best checkpoint is the best
fewshot_val_miou). Logs, checkpoints, resuming, devices and DDP are train_lseg.py's: checkpoints/<exp_name>/
version_<N>/ (metrics.csv, checkpoints/last.ckpt and the best), a run resumes from the experiment's
last.ckpt unless --no_resume.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from lang_seg.commands.train import add_run_flags
from lang_seg.config import BACKBONES
from lang_seg.errors import LangSegError, cli_errors

NO_EFFECT = "no effect (accepted for upstream's command lines)"
USE_PRETRAINED = ("True", "False", "clip_fixed")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    # upstream's flags (train_lseg.py's, LSegmentationModuleZS's, LSegModuleZS's)
    p.add_argument("--exp_name", required=True, help="name your experiment")
    p.add_argument("--dataset", default="pascal", help="the benchmark: pascal, coco or fss (upstream's choices)")
    p.add_argument("--data_path", "--datapath", "--data-path", dest="data_path", default=None,
                   help="folder in HSNet's Datasets_HSN layout, relative to the working directory (default "
                        "fewshot_data/Datasets_HSN, as upstream; for fss without it: the bundled tiny set)")
    p.add_argument("--fold", type=int, default=0, help="0..3 (FSS-1000 has no folds)")
    p.add_argument("--batch_size", type=int, default=20, help="episodes a batch (upstream's 20); 2x images")
    p.add_argument("--base_lr", type=float, default=0.004)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=1e-4)
    p.add_argument("--backbone", default="clip_resnet101", choices=list(BACKBONES),
                   help="clip_resnet101 (upstream's PASCAL and COCO folds), clip_vitl16_384, ... (tiny_*: tests)")
    p.add_argument("--num_features", type=int, default=256)
    p.add_argument("--midasproto", action="store_true", help="Adam (betas 0.9, 0.999) instead of SGD, as upstream")
    p.add_argument("--finetune_weights", default=None,
                   help="start from this checkpoint's weights (loaded non-strictly: what matches the network)")
    p.add_argument("--use_pretrained", default="True", choices=USE_PRETRAINED,
                   help="True: CLIP's text tower and the image trunk's pretrained weights; False: random "
                        "(clip_fixed, upstream's frozen ViT, is not available)")
    p.add_argument("--finetune_mode", action="store_true", help="not available (upstream's fine-tuning on the "
                   "tested classes' supports)")
    p.add_argument("--nworker", "--num_workers", "--workers", dest="num_workers", type=int, default=None,
                   help="data-loading processes (default: upstream's 16, at most the machine's cores)")
    p.add_argument("--nshot", type=int, default=0, help=NO_EFFECT + " (upstream: only with --finetune_mode)")
    p.add_argument("--logpath", default="", help=NO_EFFECT + " (logs go to checkpoints/<exp_name>/)")
    for flag in ("--widehead", "--widehead_hr", "--use_relabeled", "--se-loss", "--augment"):
        p.add_argument(flag, action="store_true", help=NO_EFFECT)
    p.add_argument("--no-scaleinv", dest="scaleinv", action="store_false", help=NO_EFFECT)
    p.add_argument("--aux", action="store_true", help="not supported: LSeg has no auxiliary head")
    p.add_argument("--arch_option", type=int, default=0, help="0: the zero-shot nets have no head block")
    p.add_argument("--block_depth", type=int, default=0, help=NO_EFFECT)
    p.add_argument("--activation", choices=["relu", "lrelu", "tanh"], default="relu", help=NO_EFFECT)
    p.add_argument("--dropout", type=float, default=0.1, help=NO_EFFECT)
    p.add_argument("--ignore_index", type=int, default=-1, help=NO_EFFECT + " (the episodes' masks are 0/1)")
    p.add_argument("--project_name", default="lightseg", help=NO_EFFECT)
    # this project's flags (train_lseg.py's)
    add_run_flags(p)
    p.add_argument("--img_size", "--img-size", dest="img_size", type=int, default=480,
                   help="side the pictures are resized to (upstream's 480), a multiple of the patch size")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="random initial weights (the same as --use_pretrained False; no download)")
    return p


def check_flags(args) -> None:
    from lang_seg.fewshot import check_benchmark, check_fold

    check_benchmark(args.dataset)
    check_fold(args.fold)
    if args.aux:
        raise LangSegError("--aux is not supported: LSeg has no auxiliary head")
    if args.finetune_mode:
        raise LangSegError("--finetune_mode (upstream's fine-tuning on the tested classes' supports) is not available: "
                           "train on the fold's training classes without it")
    if args.use_pretrained == "clip_fixed":
        raise LangSegError("--use_pretrained clip_fixed (upstream's frozen ViT) is not available: use True or False")
    if args.arch_option != 0:
        raise LangSegError(f"--arch_option {args.arch_option}: the zero-shot networks have no head block (0)")
    for flag in ("batch_size", "img_size", "max_epochs", "accumulate_grad_batches"):
        if getattr(args, flag) < 1:
            raise LangSegError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.num_workers is not None and args.num_workers < 0:
        raise LangSegError(f"--num_workers must be 0 or more, got {args.num_workers}")


def zero_shot_checkpoints():
    """The best few-shot validation mIoU (the benchmark's figure); trainer_arguments adds last.ckpt."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return [ModelCheckpoint(monitor="fewshot_val_miou", mode="max", save_top_k=1,
                            filename="result-{epoch}-{fewshot_val_miou:.2f}")]


def build(args: argparse.Namespace):
    """``(module, datamodule, trainer_kwargs, resume, weights_only)``: what ``main`` fits."""
    check_flags(args)
    import pytorch_lightning as pl

    from lang_seg.commands.train import latest_last_checkpoint, load_finetune_weights, run_trainer_arguments
    from lang_seg.data.fewshot import resolve_datapath
    from lang_seg.data.fewshot.datamodule import FewShotDataModule
    from lang_seg.modules.lseg_module_zs import LSegModuleZS
    from lang_seg.modules.trainer import LOG_ROOT, checkpoint_for_lightning

    if args.seed is not None:
        pl.seed_everything(args.seed, workers=True)
    trainer_kwargs = run_trainer_arguments(args, callbacks=zero_shot_checkpoints())
    datamodule = FewShotDataModule(benchmark=args.dataset, datapath=resolve_datapath(args.dataset, args.data_path),
                                   fold=args.fold, batch_size=args.batch_size, img_size=args.img_size,
                                   backbone=args.backbone, num_workers=args.num_workers, seed=args.seed)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        datamodule.setup("fit")  # fails early, naming the layout, when the data is missing
    for note in notes:  # e.g. FSS-1000 categories absent from the copy
        print(f"note: {note.message}")
    module = LSegModuleZS(
        dataset=args.dataset, fold=args.fold, backbone=args.backbone, num_features=args.num_features,
        pretrained=args.pretrained and args.use_pretrained == "True", base_lr=args.base_lr,
        batch_size=args.batch_size, max_epochs=args.max_epochs, weight_decay=args.weight_decay,
        momentum=args.momentum, backend=args.backend, accumulate_grad_batches=args.accumulate_grad_batches,
        ms_mode=args.ms_mode, midasproto=args.midasproto,
    )
    module.check_data(datamodule)  # before the Trainer makes its log folder
    if args.finetune_weights is not None:
        load_finetune_weights(module, args.finetune_weights, args.trust)
    resume = args.resume or (None if args.no_resume else latest_last_checkpoint(os.path.join(LOG_ROOT, args.exp_name)))
    weights_only = checkpoint_for_lightning(resume, args.trust) if resume is not None else None
    return module, datamodule, trainer_kwargs, resume, weights_only


@cli_errors
def main(argv=None) -> int:
    import pytorch_lightning as pl

    module, datamodule, trainer_kwargs, resume, weights_only = build(build_parser().parse_args(argv))
    pl.Trainer(**trainer_kwargs).fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=weights_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
