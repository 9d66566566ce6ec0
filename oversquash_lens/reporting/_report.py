"""``osl.report``: run a suite on a model and write a self-contained report folder.

``out/`` receives ``report.html`` (inline figures, circuitsvis views when
``osl.render`` is installed), ``summary.json`` (the numbers the page shows, timings,
provenance), ``results/<step>.npz`` (each Result's ``save()``: arrays plus JSON metadata
with provenance) and ``figures/<step>.png`` / ``.svg``.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import tasks as task_module
from .._adapter import ModelAdapter
from .._behaviour import behaviour
from .._collapse import collapse
from .._glasses import compare_glasses
from .._json import dumps
from .._progress import progress_bar
from .._trace import trace
from ..analyzers._collapse_result import CollapseResult
from ..models import load_model
from ..plotting import save_figure
from ..results import Provenance, atomic_write_bytes
from . import _html as h
from ._plan import (
    BehaviourStep,
    CollapseStep,
    GlassesStep,
    Step,
    TraceStep,
    fit_lengths,
    get_suite,
    prompt_tokens,
    shares,
)
from ._tables import COLLAPSE_COLUMNS, PROXY_COLUMNS, collapse_rows, describe_collapse, proxy_rows


@dataclass
class Section:
    """What one step produced: page parts, numbers for summary.json, files written."""

    key: str
    title: str
    parts: list[Any] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    formats: tuple[str, ...] = ("png", "svg")


def report(
    model: Any,
    suite: str = "paper",
    out: str | Path = "oversquash_report",
    *,
    quick: bool = False,
    progress: bool = True,
    precisions: list[str] | None = None,
    load_options: dict[str, Any] | None = None,
    figure_formats: Sequence[str] = ("png", "svg"),
) -> Path:
    """Run a suite of the paper's measurements on a model and write an HTML report.

    Args:
        model: HookedTransformer or TransformerBridge, or a name for
            :func:`~oversquash_lens.load_model` (loaded with its defaults).
        suite: Suite name (``"paper"``: Fig 5 (a)–(d), sensitivity and attention-path
            profiles of the counting and copying prompts, the precision sweep against
            the 1/ε prediction, and behaviour when available; ``"smoke"``: the same
            steps at toy sizes).
        out: Folder to write (created; existing files of the same names are replaced).
        quick: Smaller sizes (lengths up to 200, 64-token prompts).
        progress: Show one progress bar over the steps.
        precisions: Fig 5 precisions instead of float32 and bfloat16.
        load_options: Keyword arguments of :func:`~oversquash_lens.load_model` when
            ``model`` is a name (backend, dtype, device); its load time is reported.
        figure_formats: Files written per figure under ``figures/`` (PNG is always
            written: the page inlines it).

    Returns:
        The path of ``report.html``.

    Example:
        >>> import tempfile, oversquash_lens as osl
        >>> from oversquash_lens.reporting import report
        >>> out = tempfile.mkdtemp()
        >>> page = report("tiny-nope", "smoke", out, progress=False, figure_formats=["png"])
        >>> page.name, (page.parent / "summary.json").exists()
        ('report.html', True)
    """
    plan = get_suite(suite, quick=quick, precisions=precisions)  # fails before loading
    run = start_run(model, plan, out, load_options, figure_formats)
    sections = run_steps(run, plan.steps, progress)
    return write_page(run, sections)


@dataclass
class ReportRun:
    """One report's model, plan and folder, and when it started.

    ``seconds`` fixes the total time (a merged report: the longest shard's); None
    measures it from ``start``.
    """

    model: Any
    adapter: ModelAdapter | None
    provenance: Provenance
    plan: Any
    folder: Path
    formats: tuple[str, ...]
    load_seconds: float
    start: float
    seconds: float | None = None

    def elapsed(self) -> float:
        """Seconds since the run started (or the fixed total)."""
        return self.seconds if self.seconds is not None else time.perf_counter() - self.start


def start_run(
    model: Any,
    plan: Any,
    out: str | Path,
    load_options: dict[str, Any] | None,
    figure_formats: Sequence[str],
) -> ReportRun:
    """Load the model when given a name, and create the folder's ``results``/``figures``."""
    start = time.perf_counter()
    if isinstance(model, str):
        model = load_model(model, **(load_options or {}))
    load_seconds = time.perf_counter() - start
    formats = ("png", *(f for f in figure_formats if f != "png"))
    folder = Path(out)
    for sub in ("results", "figures"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    adapter = ModelAdapter(model)
    return ReportRun(
        model, adapter, adapter.provenance(), plan, folder, formats, load_seconds, start
    )


def run_steps(
    run: ReportRun,
    steps: Sequence[Step],
    progress: bool,
    after_step: Any = None,
) -> list[Section]:
    """Run ``steps`` in order; ``summary.json`` (or ``after_step(sections)``) after each."""
    sections: list[Section] = []
    bar = progress_bar(total=len(steps), disable=not progress, desc="report", unit="step")
    for step in steps:
        bar.set_postfix_str(step.key)
        began = time.perf_counter()
        assert run.adapter is not None  # a run that runs steps has its model
        section = _run(step, run.model, run.adapter, run.folder, run.formats)
        section.seconds = time.perf_counter() - began
        sections.append(section)
        bar.update(1)
        if after_step is None:
            write_summary(run, sections)
        else:
            after_step(sections)
    bar.close()
    return sections


def write_page(run: ReportRun, sections: list[Section]) -> Path:
    """``report.html`` and ``summary.json`` for ``sections``; the page's path."""
    plan = run.plan
    suite_label = f"{plan.name} ({'quick' if plan.quick else 'full'})"
    total = run.elapsed()
    page = h.report_page(run.provenance, suite_label, sections, run.load_seconds, total)
    target = run.folder / "report.html"
    atomic_write_bytes(target, page.encode("utf-8"))
    write_summary(run, sections)
    return target


def _run(
    step: Step, model: Any, adapter: ModelAdapter, folder: Path, formats: tuple[str, ...]
) -> Section:
    section = Section(step.key, step.title, formats=formats)
    if isinstance(step, CollapseStep):
        _collapse_section(step, model, folder, section)
    elif isinstance(step, TraceStep):
        _trace_section(step, model, adapter, folder, section)
    elif isinstance(step, BehaviourStep):
        _behaviour_section(step, model, folder, section)
    else:
        _glasses_section(step, model, folder, section)
    return section


# ---------------------------------------------------------------- collapse
def _collapse_section(step: CollapseStep, model: Any, folder: Path, section: Section) -> None:
    family = step.family()
    lengths = fit_lengths(family, model, step.lengths)
    result = collapse(model, family, lengths, list(step.precisions), heads=-1, progress=False)
    section.files.append(_rel(folder, result.save(folder / "results" / step.key)))
    rows = collapse_rows(result)
    section.summary = {
        "family": result.family_params,
        "mode": result.mode,
        "passes_per_precision": result.passes,
        "lengths": [lengths[0], lengths[-1], len(lengths)],
        "precisions": rows,
    }
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    result.plot(ax=ax, precisions=list(step.plot_precisions))
    ax.set_title(step.title, fontsize=9)
    caption = (
        f"{step.title}: L∞ distance between the last layer's per-head outputs of A_k and "
        f"B_k (mean over heads, min–max band; grey: noise floor), {result.mode} passes."
    )
    section.parts += [
        h.heading(step.title, anchor=step.key),
        h.paragraph(describe_collapse(result)),
        _figure(fig, folder, step.key, caption, section),
        h.table(rows, COLLAPSE_COLUMNS),
        h.note(
            "collapse length: first measured k from which the pair stays collapsed at y_n "
            "(bits: identical after rounding to the format; ε: L∞ below the format's "
            "machine epsilon; argmax: same next token); predicted: the 1/k law fitted on "
            "the most precise run, extrapolated to ε. '–': not collapsed up to the "
            "largest k measured."
        ),
    ]
    section.parts += h.views("collapse", result, family, model)
    if step.sweep:
        _sweep(result, folder, step.key, section)


def _sweep(result: CollapseResult, folder: Path, key: str, section: Section) -> None:
    """Collapse length against the format's epsilon, measured and predicted (1/ε law)."""
    import matplotlib.pyplot as plt

    rows = collapse_rows(result)
    eps = [r["epsilon"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    k_max = result.lengths[-1]
    for column, marker in (("collapse k (bits)", "o"), ("collapse k (ε)", "s")):
        seen = [(e, r[column]) for e, r in zip(eps, rows, strict=True) if r[column] is not None]
        never = [e for e, r in zip(eps, rows, strict=True) if r[column] is None]
        if seen:
            ax.scatter(*zip(*seen, strict=True), marker=marker, label=f"measured, {column[11:]}")
        if never:
            ax.scatter(never, [k_max] * len(never), marker="^", facecolors="none",
                       edgecolors="grey", label=f"{column[11:]}: not by k_max")  # fmt: skip
    predicted = [(e, r["predicted k (1/ε)"]) for e, r in zip(eps, rows, strict=True)]
    predicted = [(e, k) for e, k in predicted if k is not None and k > 0]
    if predicted:
        ax.plot(*zip(*sorted(predicted), strict=True), "k--", lw=1, label="predicted c/ε")
    ax.axhline(k_max, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("machine epsilon of the format")
    ax.set_ylabel("collapse length k")
    ax.legend(fontsize=7)
    ax.set_title("Precision sweep: collapse length vs 1/ε", fontsize=9)
    sweep_key = f"{key}_precision_sweep"
    section.parts += [
        h.heading("Precision sweep: collapse length against 1/ε", 3, anchor=sweep_key),
        h.paragraph(
            "The paper's §4 (Thm 4.2) shows the two last-token representations converge. "
            "A pair that shrinks as c/k becomes indistinguishable in a format once c/k "
            "falls under its epsilon, so the collapse length should scale as 1/ε. "
            "Native dtypes run the whole model in that dtype; emulate:* rounds the residual "
            "stream and attention outputs while the model runs in float32."
        ),
        _figure(fig, folder, sweep_key, "Collapse length against epsilon.", section),
    ]
    section.summary["precision_sweep"] = [
        {k: r[k] for k in ("precision", "epsilon", "collapse k (bits)", "predicted k (1/ε)")}
        for r in rows
    ]


# ---------------------------------------------------------------- flow
FLOW_COLUMNS = ["what", "first", "early", "middle", "late", "last", "argmin", "ρ", "τ"]


def _trace_section(
    step: TraceStep, model: Any, adapter: ModelAdapter, folder: Path, section: Section
) -> None:
    n = min(step.n, adapter.n_ctx)
    tokens = prompt_tokens(model, step.prompt, n)
    flow = trace(model, tokens, probes=step.probes, layers=step.layers(adapter.n_layers))
    section.files.append(_rel(folder, flow.save(folder / "results" / step.key)))
    y = flow.point_index()
    rho, tau = float(flow.spearman[0, y]), float(flow.kendall[0, y])
    rows = []
    profiles = (("sensitivity", flow.sensitivity[0, y]), ("bound paths", flow.paths[0, y]))
    for what, values in profiles:
        rows.append({"what": what, **shares(values), "ρ": rho, "τ": tau})
    proxies = proxy_rows(flow)
    section.summary = {
        "prompt": step.prompt,
        "n": n,
        "probes": step.probes,
        "points": list(flow.points),
        "sensitivity": rows[0],
        "bound": rows[1],
        "spearman_by_point": flow.spearman[0].tolist(),
        "kendall_by_point": flow.kendall[0].tolist(),
        "proxies_at_y_n": proxies,
    }
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    flow.plot_profile(ax)
    ax.set_title(f"{step.prompt}, n={n}: ρ={rho:.2f}, τ={tau:.2f}", fontsize=9)
    section.parts += [
        h.heading(step.title, anchor=step.key),
        h.paragraph(
            f"Hutchinson estimate ({step.probes} probes) of ‖∂y_n/∂v_i(0)‖ for every input "
            "position i, beside the attention-path bound of Thm 5.1 (paths through every "
            "layer, heads averaged). Shares of each profile's mass: first token, thirds, "
            "last token; ρ/τ: Spearman/Kendall between the two profiles."
        ),
        _figure(fig, folder, step.key, f"Sensitivity and path profiles, {step.prompt}.", section),
        h.table(rows, FLOW_COLUMNS),
        h.heading("Which proxy explains the measurement (y_n)", 3),
        h.paragraph(
            "Each path proxy against the measured sensitivity with full attention and with "
            "attention frozen (the value path only: the setting of Thm 5.1). ρ, τ: rank "
            "agreement over positions; first: the share on the first token. The certified "
            "bound uses constants measured on this run and must hold at every position "
            "(holds = 1; against these Frobenius estimates it is checked through "
            "‖J‖₂ ≥ ‖J‖_F/√d); slack: bound / measured."
        ),
        h.table(proxies, PROXY_COLUMNS),
    ]
    section.parts += h.views("flow", flow)
    if step.prompt == "count_ones":
        section.parts += h.views("attention", model, tokens[:, : min(n, 32)], adapter.n_layers)


# ---------------------------------------------------------------- behaviour
def _behaviour_section(step: BehaviourStep, model: Any, folder: Path, section: Section) -> None:
    task = getattr(task_module, step.task)()
    result = behaviour(
        model,
        task,
        list(step.lengths),
        samples=step.samples,
        max_new_tokens=step.max_new_tokens,
        progress=False,
    )
    section.files.append(_rel(folder, result.save(folder / "results" / step.key)))
    accuracy = result.accuracy().to_dict("records")
    n_star = result.failure_length()
    rows = result.rows()
    last = max(rows, key=lambda r: r["k"])
    section.summary = {
        "task": step.task,
        "failure_length": n_star,
        "accuracy": accuracy,
        "example": {k: last.get(k) for k in ("k", "output", "parsed", "answer", "correct")},
    }
    section.parts += [
        h.heading(step.title, anchor=step.key),
        h.paragraph(
            f"{result.task_description}. Greedy decoding, {step.samples} prompt per length; "
            f"N* (first length from which accuracy stays below 0.5): "
            f"{'not reached' if n_star is None else n_star}."
        ),
        _figure(result.plot(), folder, step.key, f"Accuracy against length: {step.task}.", section),
        h.table(accuracy, ["k", "n", "accuracy", "mean_abs_error", "unparsed"]),
        h.note(f"Output at k = {last['k']}: {last.get('output')!r} (answer {last.get('answer')})."),
    ]


# ---------------------------------------------------------------- glasses
def _glasses_section(step: GlassesStep, model: Any, folder: Path, section: Section) -> None:
    task = getattr(task_module, step.task)()
    result = compare_glasses(
        model,
        task,
        list(step.lengths),
        list(step.variants),
        precision=step.precision,
        probes=step.probes,
        behaviour=False,
        progress=False,
    )
    section.files.append(_rel(folder, result.save(folder / "results" / step.key)))
    columns = ["variant", "length", "linf", "eps_ratio", "bitwise_equal", "relevant_share"]
    rows = result.to_dataframe()[columns].to_dict("records")
    section.summary = {"task": step.task, "precision": step.precision, "rows": rows}
    section.parts += [
        h.heading(step.title, anchor=step.key),
        h.paragraph(
            f"{task.describe()}. Per variant and length k: the L∞ distance between y_n "
            f"for k and k + 1 items in {step.precision} (and in units of its ε), and the "
            f"share of y_n's sensitivity (Hutchinson, {step.probes} probes) that falls on "
            "the answer-relevant final 0. Accuracy is in the behaviour sections."
        ),
        _figure(result.plot(), folder, step.key, "The glasses, side by side.", section),
        h.table(rows, columns),
    ]


# ---------------------------------------------------------------- helpers
def _figure(fig: Any, folder: Path, stem: str, caption: str, section: Section) -> str:
    import matplotlib.pyplot as plt

    files = _save_figure(fig, folder / "figures" / stem, section.formats)
    plt.close(fig)
    section.files += [_rel(folder, f) for f in files]
    png = next(f for f in files if f.suffix == ".png")  # inlined as written: no re-render
    return h.figure_png(png.read_bytes(), caption, files=[_rel(folder, f) for f in files])


def _save_figure(fig: Any, stem: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    return [Path(p) for p in save_figure(fig, stem, formats=formats, dpi=110)]


def _rel(folder: Path, path: Path) -> str:
    return Path(path).relative_to(folder).as_posix()


def write_summary(run: ReportRun, sections: list[Section]) -> None:
    """``summary.json``: the numbers of every section, timings and provenance."""
    summary = {
        "suite": run.plan.name,
        "quick": run.plan.quick,
        "provenance": run.provenance.to_dict(),
        "seconds": {"load": run.load_seconds, "total": run.elapsed()}
        | {s.key: s.seconds for s in sections},
        "steps": {s.key: s.summary | {"files": s.files} for s in sections},
    }
    payload = dumps(summary, indent=1, default=str)  # strict JSON: NaN is null
    atomic_write_bytes(run.folder / "summary.json", payload.encode())
