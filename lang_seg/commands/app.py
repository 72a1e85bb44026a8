"""The browser demo: upload a picture, type labels, see its segmentation (a Streamlit page).

    lseg-app                      # the bundled tiny checkpoint, trained first if absent
    lseg-app --weights CKPT --backend mindspore --port 8501

Loads the model of ``--backend`` before serving (a bad checkpoint stops here with
one ``error:`` line), then serves ``lang_seg/webapp/page.py`` on ``--host``
(loopback unless told otherwise) and ``--port``. Without ``--weights`` it uses the
newest ``checkpoints/bundled_tiny/version_N/checkpoints/last.ckpt`` of the
README's first command, and runs that command first when there is none.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Optional

from lang_seg.configs import CONFIG_DIR

from .app_logic import BACKEND_CHOICES, MAX_SIDE, MIN_SIDE, backends_of, model_store
from lang_seg.errors import LangSegError, cli_errors

PAGE = Path(__file__).resolve().parent / "webapp" / "page.py"
BUNDLED_RUN = Path("checkpoints") / "bundled_tiny"
TRAIN_COMMAND = ("-m", "lang_seg.commands.train", "fit", "--config", str(CONFIG_DIR / "bundled_tiny.yaml"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lseg-app", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--weights", default=None,
                        help="a lang-seg checkpoint of either backend, or upstream's (default: the bundled tiny one)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="torch",
                        help="the page's initial choice, loaded before serving (the page can switch)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 serves every interface")
    parser.add_argument("--max-side", type=int, default=MAX_SIDE,
                        help="largest picture accepted, in pixels on the long side")
    return parser


def newest_checkpoint(run_dir: Path) -> Optional[Path]:
    """``run_dir/version_N/checkpoints/last.ckpt`` with the largest N, if any."""
    found = []
    for path in Path(run_dir).glob("version_*/checkpoints/last.ckpt"):
        match = re.fullmatch(r"version_(\d+)", path.parent.parent.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def default_weights(root: Optional[Path] = None, run: Callable[..., int] = subprocess.call) -> Path:
    """The newest bundled tiny checkpoint under ``root`` (default: the working directory, where the README's
    first command writes it); trains it there first (that command, through ``run``) when there is none."""
    root = Path.cwd() if root is None else Path(root)
    found = newest_checkpoint(root / BUNDLED_RUN)
    if found:
        return found
    print(f"no checkpoint under {root / BUNDLED_RUN}: training the bundled tiny model first (about a minute on "
          f"2 cores): python {' '.join(TRAIN_COMMAND)}", flush=True)
    code = run([sys.executable, *TRAIN_COMMAND], cwd=root)
    found = newest_checkpoint(root / BUNDLED_RUN)
    if code != 0 or found is None:
        raise LangSegError(f"training the bundled model failed (exit status {code}): run "
                           f"'python {' '.join(TRAIN_COMMAND)}' in {root} to see why, or pass --weights CKPT")
    return found


def streamlit_arguments(args, weights: Path) -> List[str]:
    """``streamlit run`` arguments: the page on ``--host:--port``, no browser opened, no usage statistics
    (no network), no file watching, no developer menu or error details (errors are the page's own)."""
    return ["run", str(PAGE),
            "--server.address", args.host, "--server.port", str(args.port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal", "--client.showErrorDetails", "none", "--theme.base", "light",
            "--", "--weights", str(weights), "--backend", args.backend, "--max-side", str(args.max_side)]


@cli_errors
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_side < MIN_SIDE:
        raise LangSegError(f"--max-side {args.max_side} is below the smallest picture side accepted ({MIN_SIDE})")
    if not 0 < args.port < 65536:
        raise LangSegError(f"--port {args.port} is not a TCP port (1-65535)")
    weights = Path(args.weights) if args.weights else default_weights()
    if not weights.is_file():
        raise LangSegError(f"checkpoint {weights} does not exist: check the path")
    weights = weights.resolve()
    store = model_store(str(weights))  # the page, in this process, finds these models loaded
    for backend in backends_of(args.backend):
        print(f"loading the {backend} model from {weights}", flush=True)
        store.get(backend)
    print(f"serving the demo at http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(args=streamlit_arguments(args, weights), prog_name="streamlit", standalone_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
