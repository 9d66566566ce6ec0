"""Arguments of the ``oversquash-lens`` command line: parser, examples, value checks."""

import argparse
from pathlib import Path
from typing import Any

import torch

from ._shards import Shard
from .tasks import PROMPTS

FAMILIES = ("ones", "fixed_final", "random_prefix", "separated")
FLOW_TASKS = ("count_ones", "first_digit", "last_digit")
PATH_METHOD_NAMES = ("bound", "rollout", "context", "value", "flow", "certified")

EXAMPLES = {
    "main": """examples:
  oversquash-lens report --model smollm2-135m --out report/   # the paper's suite, HTML
  oversquash-lens report --model tiny-gpt2 --quick --out /tmp/r
  oversquash-lens collapse --model tiny-gpt2 --lengths 1:200:10 --precision float32,bfloat16
  oversquash-lens trace --model tiny-llama --task count_ones --n 64
  oversquash-lens demo                                         # SmolLM2-135M, offline
  oversquash-lens models

Run `oversquash-lens COMMAND --help` for each command's options and examples.
""",
    "demo": """examples:
  oversquash-lens demo                              # SmolLM2-135M, offline
  oversquash-lens demo --model tiny-llama --backend bridge
  oversquash-lens demo --prompt "Count the ones: 1 1 1 1" --json
""",
    "models": """examples:
  oversquash-lens models
  oversquash-lens models --json
""",
    "trace": """examples:
  oversquash-lens trace --model tiny-llama --prompt "How many ones? 1 1 1 1 1"
  oversquash-lens trace --model smollm2-135m --task last_digit --n 256 --probes 16
  oversquash-lens trace --model tiny-gpt2 --task count_ones --n 64 --json --out /tmp/t
  oversquash-lens trace --model tiny-llama --task last_digit --n 48 --path-methods rollout,flow
""",
    "paths": """examples:
  oversquash-lens paths --model tiny-gpt2 --prompt "1 1 1 1 1 1"
  oversquash-lens paths --model smollm2-135m --task count_ones --n 512 --method rollout
  oversquash-lens paths --model tiny-llama --task last_digit --n 64 --json
""",
    "sensitivity": """examples:
  oversquash-lens sensitivity --model tiny-llama --prompt "1 1 1 1" --method exact
  oversquash-lens sensitivity --model smollm2-135m --task count_ones --n 128 --layers final
  oversquash-lens sensitivity --model tiny-gpt2 --task first_digit --n 32 --json
""",
    "collapse": """examples:
  oversquash-lens collapse --model tiny-gpt2 --lengths 1:200:10
  oversquash-lens collapse --model smollm2-135m --family ones --prefix count_ones \\
      --lengths 1:1000 --precision float32,bfloat16,emulate:float8_e4m3 --out /tmp/c
  oversquash-lens collapse --model tiny-llama --family separated --lengths 1,2,4,8 --json

Lengths: START:STOP[:STEP] (STOP included when the step reaches it) or a comma list.
Precisions: float32, float16, bfloat16, float64 run natively; emulate:<format> (e.g.
emulate:float8_e4m3, emulate:e5m3) rounds the residual stream instead.
Across machines: the same command with --shard I/N --out DIR on each, then `merge`.
""",
    "behaviour": """examples:
  oversquash-lens behaviour --model smollm2-135m --task copy_last --lengths 1,5,10,20
  oversquash-lens behaviour --model tiny-gpt2 --task count_ones --lengths 1:10 --json
  oversquash-lens behaviour --model toy-copy --task copy_first --lengths 8,32,48,64
  oversquash-lens behaviour --model toy-copy --lengths 1:64 --shard 2/4 --out /tmp/b
""",
    "merge": """examples:
  oversquash-lens merge /tmp/c/collapse.shard-*-of-3.ckpt --out /tmp/c
  oversquash-lens merge shard1/behaviour.shard-1-of-2.ckpt shard2/behaviour.shard-2-of-2.ckpt

  oversquash-lens merge s1/report.shard-1-of-2.json s2/report.shard-2-of-2.json --out report/

Combines the files that `collapse ... --shard I/N --out DIR` and `behaviour ... --shard I/N
--out DIR` wrote into the result the unsharded command gives, with the same outputs; and the
`report ... --shard I/N --out DIR` files into one report folder (the same page, apart from
the timings).
""",
    "report": """examples:
  oversquash-lens report --model smollm2-135m --out report/    # full suite, ~7 min, 2 CPUs
  oversquash-lens report --model smollm2-135m --quick --out /tmp/report
  oversquash-lens report --model tiny-gpt2 --quick --precision float32,emulate:bfloat16

Writes OUT/report.html (self-contained), OUT/summary.json, OUT/results/*.npz and
OUT/figures/*.png|svg. With --shard I/N it runs every N-th step into OUT and writes
OUT/report.shard-I-of-N.json; `merge` makes the report from the N files.
""",
}


class UsageError(Exception):
    """A bad argument found after parsing (exit code 2)."""


def parse_lengths(text: str) -> list[int]:
    """``"1:200:10"`` (inclusive of 200 if the step reaches it), ``"5"`` or ``"1,2,4,8"``.

    Raises:
        argparse.ArgumentTypeError: With the accepted syntax, for anything else.

    Example:
        >>> parse_lengths("1:20:5"), parse_lengths("1,2,4"), parse_lengths("3:5")
        ([1, 6, 11, 16], [1, 2, 4], [3, 4, 5])
    """
    syntax = "use START:STOP[:STEP] (e.g. 1:200:10) or a comma list (e.g. 1,2,4,8)"
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
            if step < 1:
                raise argparse.ArgumentTypeError(f"step must be >= 1 in {text!r}: {syntax}")
            if stop < start:
                raise argparse.ArgumentTypeError(
                    f"empty range {text!r}: STOP must be >= START; {syntax}"
                )
            values = list(range(start, stop + 1, step))
        else:
            values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read lengths {text!r}: {syntax}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"no lengths in {text!r}: {syntax}")
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"lengths must be >= 1, got {text!r}")
    return values


def parse_precisions(values: list[str] | None) -> list[str] | None:
    """Flatten ``--precision a,b --precision c`` into ``[a, b, c]`` (None if not given).

    Example:
        >>> parse_precisions(["float32,bfloat16", "emulate:e5m3"])
        ['float32', 'bfloat16', 'emulate:e5m3']
    """
    if not values:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def check_arguments(args: argparse.Namespace) -> None:
    """Checks that need no model, run before one is loaded: ``--out`` and ``--device``.

    Raises:
        UsageError: With what to give instead.
    """
    if getattr(args, "shard", None) is not None and not args.out:
        raise UsageError(
            f"--shard {args.shard.index}/{args.shard.count} needs --out DIR: the shard's file "
            "is written there, for `oversquash-lens merge`"
        )
    if getattr(args, "out", None):
        check_out(args.out)
    if getattr(args, "device", None) is not None:
        check_device(args.device)


def check_out(text: str) -> None:
    """``--out`` must be an existing folder or a path where one can be created.

    Raises:
        UsageError: If it is a file, or lies under one.

    Example:
        >>> check_out("a/new/folder")  # nothing on disk yet: fine
    """
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"--out {text!r} is a file; --out must be a folder (existing, or a new path to "
            "create): give another path"
        )
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(
            f"--out {text!r} lies under {str(parent)!r}, which is a file, so the folder "
            "cannot be created: give a path inside a folder"
        )


def check_device(text: str) -> None:
    """``--device`` must name a torch device that exists on this machine.

    Raises:
        UsageError: For unparsable names and for devices that are not there, with the
            devices that are.

    Example:
        >>> check_device("cpu")
    """
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(
            f"--device {text!r} is not a torch device: use cpu, cuda, cuda:N or mps "
            f"(here: {', '.join(available_devices())})"
        ) from None
    problem = _device_problem(device)
    if problem is not None:
        raise UsageError(
            f"--device {text!r}: {problem}; choose one of {', '.join(available_devices())}"
        )


def available_devices() -> list[str]:
    """The devices of this machine that ``--device`` accepts: cpu, cuda:N, mps.

    Example:
        >>> available_devices()[0]
        'cpu'
    """
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def _device_problem(device: "torch.device") -> str | None:
    """Why ``device`` cannot be used here; None if it can."""
    kind = device.type
    if kind == "cpu":
        return None
    if kind == "mps":
        available, count = torch.backends.mps.is_available(), 1
    else:
        module: Any = getattr(torch, kind, None)  # torch.cuda, torch.xpu, ...
        if not callable(getattr(module, "is_available", None)):
            return f"this command cannot run on {kind} devices"
        available = bool(module.is_available())
        count = int(module.device_count()) if available else 0
    if not available:
        why = " (this torch is built without CUDA)" if kind == "cuda" and _no_cuda() else ""
        return f"no {kind} device is available on this machine{why}"
    if device.index is not None and device.index >= count:
        return f"only {count} {kind} {'device is' if count == 1 else 'devices are'} visible"
    return None


def _no_cuda() -> bool:
    return torch.version.cuda is None and torch.version.hip is None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_shard(text: str) -> Any:
    """``--shard I/N`` as a :class:`~oversquash_lens._shards.Shard`."""
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="run only shard I of N into --out (then `merge` the N files)",
    )


def _sub(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _common(parser: argparse.ArgumentParser, *, default_model: str = "smollm2-135m") -> None:
    parser.add_argument("--model", default=default_model, help="model name (see `models`)")
    parser.add_argument("--backend", choices=["hooked", "bridge"], default=None)
    parser.add_argument("--dtype", default="float32", help="float32, float64, bfloat16, float16")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps...")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _out(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    what = "folder (created if new) for the results (.npz), figures (.png/.svg), summary.json"
    parser.add_argument("--out", default=default, help=what)


def _prompt(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("prompt (text, or one of the paper's prompts)")
    group.add_argument("--prompt", default=None, help="text to analyse")
    group.add_argument("--task", choices=FLOW_TASKS, default=None, help="a built prompt")
    group.add_argument("--n", type=_positive, default=32, help="tokens of the --task prompt")


def _jacobian_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `trace` and `sensitivity`: how the Jacobian norms are taken."""
    parser.add_argument("--method", choices=["hutchinson", "exact"], default="hutchinson")
    parser.add_argument("--probes", type=_positive, default=16, help="Hutchinson probes")
    parser.add_argument("--layers", default="final", help="'final', 'all' or e.g. 0,14,final")


def build_parser() -> argparse.ArgumentParser:
    """The ``oversquash-lens`` parser and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="oversquash-lens",
        description="Measure how information about each input token reaches the last token "
        "(Barbero et al., NeurIPS 2024).",
        epilog=EXAMPLES["main"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _sub(sub, "trace", "sensitivity (full and frozen attention) beside every path proxy")
    _common(p)
    _prompt(p)
    _jacobian_options(p)
    p.add_argument(
        "--path-methods",
        default="bound,rollout,value,certified",
        help=f"comma list of proxies from {', '.join(PATH_METHOD_NAMES)}",
    )
    p.add_argument("--attention", choices=["both", "full"], default="both")
    _out(p)

    p = _sub(sub, "paths", "attention-path weights from every token to the last one")
    _common(p)
    _prompt(p)
    p.add_argument("--method", choices=PATH_METHOD_NAMES, default="bound")
    p.add_argument(
        "--heads",
        choices=["mean", "max"],
        default="mean",
        help="how heads combine (bound, rollout, context; the others keep their own rule)",
    )
    p.add_argument(
        "--product-dtype",
        choices=["auto", "float64", "float32"],
        default="auto",
        help="dtype of the running path product (bound, rollout, context): auto is float64 "
        "below 4096 tokens and float32 from there; results carry their rounding bound",
    )
    _out(p)

    p = _sub(sub, "sensitivity", "Jacobian norms of the last token w.r.t. every input token")
    _common(p)
    _prompt(p)
    _jacobian_options(p)
    _out(p)

    p = _sub(sub, "collapse", "representational collapse of a sequence family over lengths")
    _common(p)
    p.add_argument("--family", choices=FAMILIES, default="ones")
    p.add_argument(
        "--prefix",
        default="count_ones",
        help=f"prompt before the items: one of {', '.join(PROMPTS)}, '' or any text",
    )
    p.add_argument("--item", default="1", help="the repeated item")
    p.add_argument("--bos", choices=["model", "yes", "no"], default="model")
    p.add_argument("--lengths", type=parse_lengths, default=parse_lengths("1:100"))
    p.add_argument("--precision", action="append", help="comma list; repeatable")
    p.add_argument("--mode", choices=["shared", "independent"], default="shared")
    _shard(p)
    _out(p)

    p = _sub(sub, "behaviour", "greedy answers of a task against length")
    _common(p)
    p.add_argument("--task", default="copy_last", help="a task of osl.tasks, e.g. copy_last")
    p.add_argument(
        "--style",
        choices=["paper", "compact"],
        default=None,
        help="prompt style; default: compact for the toy models, paper otherwise",
    )
    p.add_argument("--lengths", type=parse_lengths, default=parse_lengths("1,2,5,10,20"))
    p.add_argument("--samples", type=_positive, default=4)
    p.add_argument("--max-new-tokens", type=_positive, default=None, help="default: the task's")
    p.add_argument("--batch-size", type=_positive, default=8)
    _shard(p)
    _out(p)

    p = _sub(sub, "merge", "combine the shards of a collapse, behaviour or report run into one")
    p.add_argument(
        "files", nargs="+", help="every shard's <sweep>.shard-I-of-N.ckpt (or report .json) file"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _out(p)

    p = _sub(sub, "report", "run the paper's suite and write a self-contained HTML report")
    _common(p)
    p.add_argument("--suite", default="paper")
    p.add_argument(
        "--quick", action="store_true", help="lengths up to 200 (about 2 minutes, not 7)"
    )
    p.add_argument("--precision", action="append", help="Fig 5 precisions, comma list")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _shard(p)
    _out(p, default="oversquash_report")

    p = _sub(sub, "demo", "per-layer last-token norms, next-token prediction and a bf16 check")
    _common(p)
    p.add_argument("--prompt", default="The capital of France is")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--out", default=None, help="folder (created if new) for summary.json")

    p = _sub(sub, "models", "list the built-in models")
    p.add_argument("--json", action="store_true")
    return parser
