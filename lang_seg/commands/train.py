"""Train LSeg with upstream lang-seg's flags, on the torch or the MindSpore backend.

    python train_lseg.py --dataset ade20k --data_path ../datasets --batch_size 1 --exp_name lseg_ade20k_l16 \\
        --base_lr 0.004 --weight_decay 1e-4 --no-scaleinv --max_epochs 240 --widehead \\
        --accumulate_grad_batches 2 --backbone clip_vitl16_384 --backend mindspore

or, as a Lightning CLI with YAML configs (``fit``, ``validate``; see ``configs/``):

    python train_lseg.py fit --config configs/bundled_tiny.yaml --model.backend mindspore

Logs go to ``checkpoints/<exp_name>/version_<N>/metrics.csv`` (and TensorBoard
event files when tensorboard is installed), checkpoints to
``checkpoints/<exp_name>/version_<N>/checkpoints/`` (``last.ckpt`` and the best
``pix_acc``). As upstream, a run resumes from the experiment's latest
``last.ckpt`` unless ``--no_resume``; ``--resume CKPT`` names one (the CLI form:
``--ckpt_path CKPT``).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

from lang_seg.config import BACKBONES
from lang_seg.errors import LangSegError, cli_errors

CLI_SUBCOMMANDS = ("fit", "validate")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags of this project's training commands (train_lseg.py, train_lseg_zs.py) that choose the backend
    and how Lightning runs: devices, DDP, epochs and steps, accumulation, seed, resume."""
    # upstream's
    p.add_argument("--num_nodes", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="overfit one batch")
    p.add_argument("--no_resume", action="store_true", help="do not resume from the experiment's last checkpoint")
    p.add_argument("--accumulate_grad_batches", type=int, default=1)
    p.add_argument("--max_epochs", type=int, default=200)
    # this project's
    p.add_argument("--backend", choices=["torch", "mindspore"], default="torch")
    p.add_argument("--ms_mode", "--ms-mode", dest="ms_mode", choices=["graph", "eager"], default=None,
                   help="MindSpore execution: graph (compiled, the default) or eager (op by op, for debugging)")
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--accelerator", default="auto", help="auto (default: the GPUs, else the CPU), gpu or cpu")
    p.add_argument("--devices", default="auto", help="auto (default: every GPU, else 1 CPU process), N or a list")
    p.add_argument("--strategy", default="auto", help="Lightning's strategy (auto: ddp with more than one process)")
    p.add_argument("--sync_batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="synchronise BatchNorm across processes (default: on for --backend torch, as upstream; "
                        "not available for mindspore)")
    p.add_argument("--resume", default=None, help="checkpoint to resume from")
    p.add_argument("--trust-checkpoint", dest="trust", action="store_true",
                   help="resume from a file holding objects other than tensors (runs code from it: trusted files only)")


def run_trainer_arguments(args: argparse.Namespace, **extra) -> dict:
    """The Trainer's arguments from the run flags (``add_run_flags``) and ``--exp_name``, through
    ``trainer_arguments``; ``extra``: more Trainer arguments (the zero-shot command's callbacks)."""
    from lang_seg.modules.trainer import trainer_arguments

    return trainer_arguments(args.exp_name, dict(
        max_epochs=args.max_epochs, max_steps=args.max_steps, accelerator=args.accelerator,
        devices=int(args.devices) if args.devices.isdigit() else args.devices, num_nodes=args.num_nodes,
        strategy=args.strategy, sync_batchnorm=args.sync_batchnorm,
        accumulate_grad_batches=args.accumulate_grad_batches,
        overfit_batches=1 if args.dry_run else 0.0, log_every_n_steps=1, **extra,
    ), backend=args.backend)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # upstream's general flags
    p.add_argument("--exp_name", required=True, help="name your experiment")
    p.add_argument("--project_name", default="lightseg")
    # upstream's model/data flags
    p.add_argument("--data_path", "--data-path", dest="data_path", default=None,
                   help="folder holding the dataset's release layout, e.g. ADEChallengeData2016/, relative to the "
                        "working directory (default, or 'bundled': the small datasets bundled with the package; "
                        "see docs/datasets.md); several datasets: P1,P2 in the order of --dataset, or one folder "
                        "holding them all")
    p.add_argument("--dataset", default="ade20k",
                   help="a dataset name (docs/datasets.md lists them; an unknown one is refused with the choices), or "
                        "several, e.g. ade20k,pascal_voc: each batch from one, scored with its own labels")
    p.add_argument("--dataset_weights", default=None,
                   help="several datasets: how often each is drawn, e.g. 3,1 (default: in proportion to their sizes)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--base_lr", type=float, default=0.004)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=1e-4)
    p.add_argument("--ignore_index", type=int, default=-1)
    p.add_argument("--backbone", default="clip_vitl16_384", choices=list(BACKBONES))
    p.add_argument("--num_features", type=int, default=256)
    p.add_argument("--arch_option", type=int, default=0)
    p.add_argument("--block_depth", type=int, default=0)
    p.add_argument("--activation", choices=["relu", "lrelu", "tanh"], default="lrelu")
    p.add_argument("--no-batchnorm", dest="no_batchnorm", action="store_true")
    # accepted for compatibility; upstream's LSegNet ignores them too
    p.add_argument("--no-scaleinv", dest="scaleinv", action="store_false", help="no effect (as upstream)")
    p.add_argument("--widehead", action="store_true", help="no effect (as upstream)")
    p.add_argument("--widehead_hr", action="store_true", help="no effect (as upstream)")
    p.add_argument("--dropout", type=float, default=0.1, help="no effect (as upstream)")
    for flag in ("--aux", "--se-loss", "--augment"):
        p.add_argument(flag, action="store_true", help="not supported by LSeg (upstream fails with it too)")
    p.add_argument("--midasproto", action="store_true",
                   help="upstream's 'midas optimization protocol': Adam (betas 0.9, 0.999) instead of SGD")
    p.add_argument("--finetune_weights", default=None,
                   help="start from this checkpoint's weights (loaded non-strictly: what matches the network)")
    p.add_argument("--aux-weight", type=float, default=0.2)
    p.add_argument("--se-weight", type=float, default=0.2)
    # this project's flags
    add_run_flags(p)
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="random initial weights instead of CLIP/timm's (no download)")
    p.add_argument("--num_workers", "--workers", dest="num_workers", type=int, default=None,
                   help="data-loading processes (default: upstream's 16, at most the machine's cores)")
    p.add_argument("--base_size", type=int, default=None, help="default: the dataset's (upstream's: docs/datasets.md)")
    p.add_argument("--crop_size", type=int, default=None, help="default: the dataset's (upstream's: docs/datasets.md)")
    return p


def load_finetune_weights(module, path: str, trust: bool = False) -> None:
    """Upstream's ``--finetune_weights``: the checkpoint's weights where their names and shapes match the
    network, the rest as initialised (said in one line)."""
    from lang_seg.checkpoint import read_checkpoint

    state = read_checkpoint(path, trust).state
    own = module.state_dict()
    matched = {f"net.{k}": v for k, v in state.items() if f"net.{k}" in own and tuple(own[f"net.{k}"].shape) == v.shape}
    if not matched:
        raise LangSegError(f"--finetune_weights {path}: none of its tensors fits the {module.options.backbone} network "
                           "(names or shapes differ): pass a checkpoint of the same backbone")
    import torch
    from pytorch_lightning.utilities import rank_zero_info

    module.load_state_dict({**own, **{k: torch.as_tensor(v) for k, v in matched.items()}})
    rank_zero_info(f"finetune: {len(matched)} of {len(own)} tensors from {path}; "
                   f"{len(own) - len(matched)} keep their initial values")


def latest_last_checkpoint(exp_dir: str):
    found = sorted(glob.glob(os.path.join(exp_dir, "version_*", "checkpoints", "last.ckpt")), key=os.path.getmtime)
    return found[-1] if found else None


def build(args: argparse.Namespace):
    """``(module, datamodule, trainer_kwargs, resume, weights_only)`` for upstream's flags: what ``main`` fits."""
    for flag in ("aux", "se_loss", "augment"):
        if getattr(args, flag):
            raise LangSegError(f"--{flag.replace('_', '-')} is not supported: LSeg has no such head (upstream fails too)")
    import pytorch_lightning as pl

    from lang_seg.data.datamodule import SegmentationDataModule
    from lang_seg.modules.lseg_module import LSegModule
    from lang_seg.modules.trainer import LOG_ROOT, checkpoint_for_lightning

    if args.seed is not None:
        pl.seed_everything(args.seed, workers=True)
    trainer_kwargs = run_trainer_arguments(args)
    datamodule = SegmentationDataModule(args.data_path, args.dataset, args.batch_size, args.base_size, args.crop_size,
                                        num_workers=args.num_workers, seed=args.seed,
                                        dataset_weights=args.dataset_weights)
    datamodule.setup("fit")  # fails early, with the expected path, when the data is missing
    module = LSegModule(
        labels=datamodule.labels,  # the dataset's own classes (#21), in class-id order; {name: classes} for several
        backbone=args.backbone, num_features=args.num_features, arch_option=args.arch_option,
        block_depth=args.block_depth, activation=args.activation, use_bn=not args.no_batchnorm,
        pretrained=args.pretrained, base_lr=args.base_lr, batch_size=args.batch_size, max_epochs=args.max_epochs,
        weight_decay=args.weight_decay, momentum=args.momentum, ignore_index=args.ignore_index,
        backend=args.backend, accumulate_grad_batches=args.accumulate_grad_batches, ms_mode=args.ms_mode,
        midasproto=args.midasproto,
    )
    module.check_data(datamodule)  # before the Trainer makes its log folder
    if args.finetune_weights is not None:
        load_finetune_weights(module, args.finetune_weights, args.trust)
    exp_dir = os.path.join(LOG_ROOT, args.exp_name)
    resume = args.resume or (None if args.no_resume else latest_last_checkpoint(exp_dir))
    weights_only = checkpoint_for_lightning(resume, args.trust) if resume is not None else None
    return module, datamodule, trainer_kwargs, resume, weights_only


@cli_errors
def main(argv=None) -> int:
    from_command_line = argv is None
    argv = sys.argv[1:] if from_command_line else list(argv)
    if argv and argv[0] in CLI_SUBCOMMANDS + ("--print_config",) or argv[:1] == ["--config"]:
        from lang_seg.modules.cli import LSegCLI

        LSegCLI(args=None if from_command_line else argv)  # LightningCLI reads sys.argv itself
        return 0
    import pytorch_lightning as pl

    module, datamodule, trainer_kwargs, resume, weights_only = build(build_parser().parse_args(argv))
    pl.Trainer(**trainer_kwargs).fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=weights_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
