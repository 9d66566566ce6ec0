"""Shared plumbing of the tutorials: command-line options, output folder, figure saving.

Kept tiny on purpose: everything a tutorial measures is in the tutorial itself.
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Options:
    """What a tutorial was asked to do.

    Attributes:
        model: Any name ``osl.load_model`` accepts.
        fast: Tiny sizes (CI): seconds on a tiny model.
        out: Folder for the figures and tables.
        threads: Torch intra-op threads (None: torch's default).
    """

    model: str
    fast: bool
    out: Path
    threads: int | None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (its argv is not ours to parse).

    Asks IPython for a running kernel: ``ipykernel`` being imported is not enough (a
    process that only starts kernels, like a notebook runner, imports it too).
    """
    from oversquash_lens._progress import in_kernel

    return in_kernel()


# In a notebook there is no command line: these variables stand for --fast, --model
# and --out there (and as defaults for a script run).
FAST_ENV, MODEL_ENV, OUT_ENV = "OSL_TUTORIAL_FAST", "OSL_TUTORIAL_MODEL", "OSL_TUTORIAL_OUT"


def options(name: str, default_model: str = "smollm2-135m") -> Options:
    """Parse ``--model``, ``--fast``, ``--out`` and ``--threads``; make the output folder.

    Unknown arguments (Jupyter's ``-f kernel.json``) are ignored. In a notebook the
    command line is not read: ``OSL_TUTORIAL_FAST=1``, ``OSL_TUTORIAL_MODEL`` and
    ``OSL_TUTORIAL_OUT`` (a folder, the tutorial's name appended) stand for the options.
    Selects the non-interactive matplotlib backend when run as a script.
    """
    parser = argparse.ArgumentParser(description=f"oversquash_lens tutorial {name}")
    out_root = Path(os.environ.get(OUT_ENV) or "tutorial_out")
    parser.add_argument(
        "--model", default=os.environ.get(MODEL_ENV) or default_model, help="any load_model name"
    )
    parser.add_argument(
        "--fast", action="store_true", default=os.environ.get(FAST_ENV) == "1", help="tiny sizes"
    )
    parser.add_argument("--out", type=Path, default=out_root / name)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    argv = [] if in_notebook() else sys.argv[1:]
    args, _ = parser.parse_known_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not in_notebook():
        import matplotlib

        matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    return Options(args.model, args.fast, args.out, args.threads)


def save(fig: Any, out: Path, filename: str, dpi: int = 90) -> None:
    """Save a matplotlib figure as a small PNG under ``out``, show it in a notebook."""
    import matplotlib.pyplot as plt

    path = out / filename
    fig.savefig(path, dpi=dpi)
    if in_notebook():
        plt.show()
    plt.close(fig)
    print(f"saved {path}")


class Timer:
    """Wall-clock seconds since creation, for the closing line of each tutorial."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.start:.1f} s"
