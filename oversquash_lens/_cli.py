"""The ``oversquash-lens`` command line: each subcommand calls one public function.

Exit codes: 0 on success, 2 for bad arguments (with a message that says what to do;
``ValueError`` and ``TypeError`` from the API count as such), 1 when a measurement fails.
Output JSON is strict: NaN and ±inf are written as ``null``.
"""

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import tasks
from ._adapter import ModelAdapter
from ._behaviour import behaviour
from ._behaviour_result import BehaviourResult
from ._cli_args import EXAMPLES as EXAMPLES
from ._cli_args import UsageError as UsageError
from ._cli_args import build_parser, check_arguments, parse_precisions
from ._collapse import collapse
from ._demo import run_demo
from ._errors import (
    BackendUnavailableError,
    EmptySequenceError,
    OversquashLensError,
    PromptTooLongError,
    TokenizationError,
    UnknownModelError,
    UnknownPrecisionError,
    UnsupportedPrecisionError,
)
from ._json import dumps
from ._paths import attention_paths
from ._sensitivity import sensitivity
from ._shards import behaviour_shard, collapse_shard, merge
from ._trace import trace
from .analyzers._paths import OWN_HEADS
from .models import list_models, load_model
from .plotting import save_figure
from .precision import parse_spec
from .reporting import report
from .reporting._plan import SUITES, prompt_tokens, shares
from .reporting._shards import merge_report, report_shard
from .reporting._tables import COLLAPSE_COLUMNS, PROXY_COLUMNS, collapse_rows, proxy_rows
from .results import atomic_write_bytes

# Errors that mean "the arguments were wrong": exit code 2, like argparse. ValueError and
# TypeError cover the API's checks of argument values (and the package's errors built on
# them); other package errors exit 1; anything else is a bug and keeps its traceback.
_USAGE_ERRORS = (
    UsageError,
    UnknownModelError,
    UnknownPrecisionError,
    UnsupportedPrecisionError,
    BackendUnavailableError,
    PromptTooLongError,
    EmptySequenceError,
    TokenizationError,
    ValueError,
    TypeError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code.

    Example:
        >>> main(["models", "--json"])  # doctest: +ELLIPSIS
        {...
        0
    """
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)  # before any model is loaded
        return _COMMANDS[args.command](args)
    except _USAGE_ERRORS as exc:
        return _fail(args.command, exc, 2)
    except OversquashLensError as exc:
        return _fail(args.command, exc, 1)


def _fail(command: str, exc: BaseException, code: int) -> int:
    print(f"oversquash-lens {command}: error: {_message(exc)}", file=sys.stderr)
    return code


def _message(exc: BaseException) -> str:
    # KeyError subclasses repr their message; show it as written.
    message = str(exc.args[0]) if exc.args else str(exc)
    return message or type(exc).__name__


# ---------------------------------------------------------------- output
def _emit(args: Any, payload: dict[str, Any], text: list[str], *, summary: bool = True) -> int:
    """Print the payload (``--json``) or the text; with ``--out``, also write summary.json."""
    folder = _out_folder(args) if summary else None
    if folder is not None:
        path = _write_summary(folder, payload)
        payload["files"] = [*payload.get("files", []), str(path)]
        text = [*text, f"wrote {path}"]
    if args.json:
        print(dumps(payload, indent=1, default=str))
    else:
        print("\n".join(text))
    return 0


def _write_summary(folder: Path, payload: dict[str, Any]) -> Path:
    """``folder/summary.json``: what the command printed, as strict JSON, atomically."""
    path = folder / "summary.json"
    atomic_write_bytes(path, dumps(payload, indent=1, default=str).encode("utf-8"))
    return path


def _table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> list[str]:
    """A plain-text table: one line per row, columns padded."""
    if not rows:
        return ["(no rows)"]
    cols = list(columns) if columns is not None else list(rows[0])

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return [line, *body]


def _out_folder(args: Any) -> Path | None:
    if not getattr(args, "out", None):
        return None
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_plot(result: Any, folder: Path, stem: str, method: str = "plot") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = getattr(result, method)()  # every plot method returns its Figure
    paths = save_figure(fig, folder / stem, dpi=110)  # the report's figure resolution
    plt.close(fig)
    return [str(p) for p in paths]


# ---------------------------------------------------------------- model, prompt
def _load(args: Any) -> Any:
    return load_model(args.model, backend=args.backend, dtype=args.dtype, device=args.device)


def _check_precisions(specs: list[str] | None) -> None:
    """Fail before loading a model: every precision must name a known format."""
    for spec in specs or []:
        parse_spec(spec)


def _tokens(args: Any, model: Any) -> Any:
    adapter = ModelAdapter(model)
    if args.prompt is not None and args.task is not None:
        raise UsageError("give either --prompt or --task, not both")
    if args.prompt is not None:
        return adapter.to_tokens(args.prompt)

    if args.n > adapter.n_ctx:
        raise UsageError(f"--n {args.n} exceeds the model's context n_ctx={adapter.n_ctx}")
    try:
        return prompt_tokens(model, args.task or "count_ones", args.n)
    except ValueError as exc:
        raise UsageError(f"{exc}: raise --n") from None


def _layers(text: str) -> Any:
    if text in ("final", "all"):
        return text
    out: list[Any] = []
    for part in text.split(","):
        part = part.strip()
        if part == "final":
            out.append(part)
        elif part.lstrip("-").isdigit():
            out.append(int(part))
        else:
            raise UsageError(f"--layers {text!r}: use 'final', 'all' or e.g. 0,14,final")
    return out


# ---------------------------------------------------------------- commands
def _models(args: Any) -> int:
    table = list_models()
    lines = [f"{name:<16} {description}" for name, description in table.items()]
    return _emit(args, table, lines)


def _demo(args: Any) -> int:
    if args.max_new_tokens < 0:
        raise UsageError("--max-new-tokens must be >= 0")

    model = _load(args) if args.device != "cpu" else None
    demo = run_demo(
        args.model,
        backend=args.backend,
        dtype=args.dtype,
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        model=model,
    )
    return _emit(args, dataclasses.asdict(demo), [demo.format()])


def _trace(args: Any) -> int:
    model = _load(args)
    tokens = _tokens(args, model)
    layers = _layers(args.layers)
    methods = [m.strip() for m in args.path_methods.split(",") if m.strip()]
    flow = trace(
        model,
        tokens,
        method=args.method,
        probes=args.probes,
        layers=layers,
        path_methods=methods,
        attention=args.attention,
    )
    rows = []
    for k, point in enumerate(flow.points):
        for what, values in (("sensitivity", flow.sensitivity), ("paths", flow.paths)):
            s = shares(values[0, k])
            rows.append({"point": point, "what": what, **s})
        rows[-1]["spearman"] = rows[-2]["spearman"] = float(flow.spearman[0, k])
        rows[-1]["kendall"] = rows[-2]["kendall"] = float(flow.kendall[0, k])
    payload: dict[str, Any] = {"n_tokens": int(tokens.shape[-1]), "rows": rows}
    proxies = proxy_rows(flow)
    payload["proxies_at_y_n"] = proxies
    payload["agreement"] = flow.agreement().to_dict("records")
    folder = _out_folder(args)
    if folder is not None:
        payload["files"] = [str(flow.save(folder / "trace"))]
        payload["files"] += _save_plot(flow, folder, "trace_profile", "plot_profile")
    text = [f"{flow.provenance.describe()}", f"{tokens.shape[-1]} tokens; mass shares:"]
    text += _table(rows) + ["", "which proxy explains the measurement at y_n:"]
    return _emit(args, payload, text + _table(proxies, PROXY_COLUMNS))


def _paths(args: Any) -> int:
    model = _load(args)
    tokens = _tokens(args, model)
    heads = "mean" if args.method in OWN_HEADS else args.heads
    result = attention_paths(
        model, tokens, method=args.method, heads=heads, product_dtype=args.product_dtype
    )
    rows = result.summary().drop(columns=["batch"]).to_dict("records")
    payload: dict[str, Any] = {"n_tokens": int(tokens.shape[-1]), "rows": rows}
    if result.rounding_relative is not None:
        payload["product_dtype"] = result.product_dtype
        payload["rounding_relative"] = float(result.rounding_relative[-1])
    folder = _out_folder(args)
    if folder is not None:
        payload["files"] = [str(result.save(folder / "paths"))]
        payload["files"] += _save_plot(result, folder, "paths")
    cols = ["layer", "first", "early", "middle", "late", "last", "argmin", "entropy_ratio"]
    text = [f"{args.method} path weights to the last of {tokens.shape[-1]} tokens, shares:"]
    return _emit(args, payload, text + _table(rows, cols))


def _sensitivity(args: Any) -> int:
    model = _load(args)
    tokens = _tokens(args, model)
    result = sensitivity(
        model, tokens, method=args.method, probes=args.probes, layers=_layers(args.layers)
    )
    rows = [
        {"point": point, **shares(result.norms[0, k]), "total": float(result.norms[0, k].sum())}
        for k, point in enumerate(result.points)
    ]
    payload: dict[str, Any] = {"n_tokens": int(tokens.shape[-1]), "rows": rows}
    folder = _out_folder(args)
    if folder is not None:
        payload["files"] = [str(result.save(folder / "sensitivity"))]
        payload["files"] += _save_plot(result, folder, "sensitivity")
    text = [f"‖∂h_n/∂x_i‖ ({args.method}) over {tokens.shape[-1]} tokens, mass shares:"]
    return _emit(args, payload, text + _table(rows))


def _family(args: Any) -> Any:
    prefix: str = tasks.PROMPTS[args.prefix] if args.prefix in tasks.PROMPTS else args.prefix
    bos = {"model": None, "yes": True, "no": False}[args.bos]
    if args.family == "ones":
        return tasks.repeated_last(args.item, prefix=prefix, bos=bos)
    if args.family == "fixed_final":
        return tasks.fixed_final(args.item, "0", prefix=prefix, bos=bos)
    if args.family == "random_prefix":
        return tasks.random_prefix(prefix=prefix, bos=bos, seed=0)
    return tasks.separated(args.item, every=3, separator=",", prefix=prefix, bos=bos)


def _collapse(args: Any) -> int:
    precisions = parse_precisions(args.precision) or ["float32"]
    _check_precisions(precisions)
    model = _load(args)
    family = _family(args)
    options = {"mode": args.mode, "heads": -1, "progress": not args.json}
    if args.shard is not None:
        path = collapse_shard(
            model, family, args.lengths, precisions, args.shard, args.out, **options
        )
        return _shard_written(args, path)
    return _collapse_output(args, collapse(model, family, args.lengths, precisions, **options))


def _collapse_output(args: Any, result: Any) -> int:
    rows = collapse_rows(result)
    payload: dict[str, Any] = {
        "family": result.family_params,
        "lengths": list(result.lengths),
        "passes_per_precision": result.passes,
        "rows": rows,
    }
    folder = _out_folder(args)
    if folder is not None:
        payload["files"] = [str(result.save(folder / "collapse"))]
        payload["files"] += _save_plot(result, folder, "collapse")
    text = [
        f"{result.family}: {len(result.lengths)} lengths {result.lengths[0]}..{result.lengths[-1]}"
        f", {result.passes} passes per precision; collapse at y_n:"
    ]
    return _emit(args, payload, text + _table(rows, COLLAPSE_COLUMNS))


def _behaviour(args: Any) -> int:
    if args.task not in tasks.TASKS:
        raise UsageError(f"unknown task {args.task!r}: choose one of {', '.join(tasks.TASKS)}")
    style = args.style or ("compact" if args.model.lower().startswith("toy-") else "paper")
    task = tasks.TASKS[args.task]()
    try:
        task = task.replace(style=style)
    except ValueError as exc:  # e.g. count_word has no compact form
        raise UsageError(f"task {args.task!r} in {style} style: {exc}") from None
    model = _load(args)
    options = {
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "progress": not args.json,
    }
    if args.shard is not None:
        path = behaviour_shard(model, task, args.lengths, args.shard, args.out, **options)
        return _shard_written(args, path)
    return _behaviour_output(args, behaviour(model, task, args.lengths, **options))


def _behaviour_output(args: Any, result: Any) -> int:
    rows = result.accuracy().to_dict("records")
    n_star = result.failure_length()
    payload: dict[str, Any] = {"task": result.task, "failure_length": n_star, "accuracy": rows}
    payload["rows"] = result.rows()
    folder = _out_folder(args)
    if folder is not None:
        payload["files"] = [str(result.save(folder / "behaviour"))]
        payload["files"] += _save_plot(result, folder, "behaviour")
    text = [f"{result.task_description}: accuracy per length, N* = {n_star}"]
    return _emit(args, payload, text + _table(rows))


def _shard_written(args: Any, path: Path) -> int:
    shard = f"{args.shard.index}/{args.shard.count}"
    payload = {"command": args.command, "shard": shard, "shard_file": str(path)}
    text = [
        f"{args.command} shard {shard}: wrote {path}",
        "when every shard is done: oversquash-lens merge <every shard's file> --out DIR",
    ]
    # summary.json would collide between shards sharing one folder: the file is the record
    return _emit(args, payload, text, summary=False)


def _merge(args: Any) -> int:
    if all(str(f).endswith(".json") for f in args.files):
        page = merge_report(args.files, args.out or "oversquash_report")
        return _report_written(args, page)
    result = merge(args.files)
    if isinstance(result, BehaviourResult):
        return _behaviour_output(args, result)
    return _collapse_output(args, result)


def _report(args: Any) -> int:
    if args.suite not in SUITES:
        raise UsageError(f"unknown suite {args.suite!r}: choose one of {', '.join(SUITES)}")
    precisions = parse_precisions(args.precision)
    _check_precisions(precisions)
    options: dict[str, Any] = {
        "quick": args.quick,
        "progress": not (args.no_progress or args.json),
        "precisions": precisions,
        "load_options": {"backend": args.backend, "dtype": args.dtype, "device": args.device},
    }
    if args.shard is not None:
        path = report_shard(args.model, args.suite, args.out, args.shard, **options)
        return _shard_written(args, path)
    return _report_written(args, report(args.model, args.suite, args.out, **options))


def _report_written(args: Any, page: Path) -> int:
    summary = json.loads((page.parent / "summary.json").read_text())
    rows = [
        {"step": key, "seconds": round(float(seconds), 1)}
        for key, seconds in summary["seconds"].items()
    ]
    size = page.stat().st_size / 1e6
    text = [f"wrote {page} ({size:.2f} MB) and {page.parent}/summary.json, results/, figures/"]
    # the report wrote its own summary.json beside the page
    return _emit(args, summary | {"report": str(page)}, text + _table(rows), summary=False)


_COMMANDS = {
    "models": _models,
    "demo": _demo,
    "trace": _trace,
    "paths": _paths,
    "sensitivity": _sensitivity,
    "collapse": _collapse,
    "behaviour": _behaviour,
    "report": _report,
    "merge": _merge,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
