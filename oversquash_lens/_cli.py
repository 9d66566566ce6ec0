"""The ``oversquash-lens`` command line."""

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from ._errors import (
    BackendUnavailableError,
    EmptySequenceError,
    OversquashLensError,
    PromptTooLongError,
    UnknownModelError,
    UnknownPrecisionError,
    UnsupportedPrecisionError,
)

EXAMPLES = """examples:
  oversquash-lens demo                              # SmolLM2-135M, offline
  oversquash-lens demo --model tiny-llama --backend bridge
  oversquash-lens demo --prompt "Count the ones: 1 1 1 1" --json
  oversquash-lens models
"""

# Errors that mean "the arguments were wrong": exit code 2, like argparse.
_USAGE_ERRORS = (
    UnknownModelError,
    UnknownPrecisionError,
    UnsupportedPrecisionError,
    BackendUnavailableError,
    PromptTooLongError,
    EmptySequenceError,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oversquash-lens",
        description="Measure how information about each input token reaches the last token "
        "(Barbero et al., NeurIPS 2024).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="per-layer last-token norms, next-token prediction and a bf16 check",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--model", default="smollm2-135m", help="model name (see `models`)")
    demo.add_argument("--backend", choices=["hooked", "bridge"], default=None)
    demo.add_argument("--dtype", default="float32", help="float32, float64, bfloat16, float16")
    demo.add_argument("--prompt", default="The capital of France is")
    demo.add_argument("--max-new-tokens", type=int, default=8)
    demo.add_argument("--json", action="store_true", help="print JSON instead of text")

    models = sub.add_parser("models", help="list the built-in models")
    models.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            from .models import list_models

            table = list_models()
            if args.json:
                print(json.dumps(table, indent=2))
            else:
                for name, description in table.items():
                    print(f"{name:<16} {description}")
            return 0
        if args.max_new_tokens < 0:
            parser.error("--max-new-tokens must be >= 0")
        from ._demo import run_demo

        report = run_demo(
            args.model,
            backend=args.backend,
            dtype=args.dtype,
            prompt=args.prompt,
            max_new_tokens=args.max_new_tokens,
        )
        print(json.dumps(dataclasses.asdict(report), indent=2) if args.json else report.format())
        return 0
    except _USAGE_ERRORS as exc:
        print(f"oversquash-lens: error: {exc}", file=sys.stderr)
        return 2
    except OversquashLensError as exc:
        print(f"oversquash-lens: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
