"""One look for every matplotlib figure, atomic figure files, and the paper's ε lines."""

import functools
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..precision import get_format, machine_epsilon
from ..results import atomic_write_bytes

# Readable at the size figures are embedded in reports; colour-blind-safe cycle (Okabe-Ito).
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
"""The colour cycle of every figure: Okabe-Ito, readable by colour-blind readers."""

RC_PARAMS: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": None,  # filled below (needs matplotlib's cycler)
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "svg.fonttype": "none",
    "svg.hashsalt": "oversquash_lens",  # stable ids: the same figure gives the same SVG
}
_FORMAT_LINESTYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))


def rc_params() -> dict[str, Any]:
    """The package's matplotlib rcParams (with its colour cycle).

    Example:
        >>> rc_params()["axes.grid"]
        True
    """
    from cycler import cycler

    params = dict(RC_PARAMS)
    params["axes.prop_cycle"] = cycler(color=list(COLORS))
    return params


@contextmanager
def style() -> Iterator[None]:
    """Inside the block, matplotlib draws with the package's look.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> with style():
        ...     plt.rcParams["axes.grid"]
        True
    """
    import matplotlib

    with matplotlib.rc_context(rc_params()):  # pyright: ignore[reportArgumentType]
        yield


def styled(function: Any) -> Any:
    """Decorator: run a plotting function inside :func:`style`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return function(*args, **kwargs)

    return wrapper


def save_figure(
    fig: Any,
    path_stem: str | os.PathLike[str],
    formats: Sequence[str] = ("png", "svg"),
    *,
    dpi: int = 150,
) -> list[Path]:
    """Save a figure in several formats, each written atomically.

    SVG files carry no date and fixed element ids: the same figure gives the same file.

    Args:
        fig: A matplotlib Figure.
        path_stem: Path without extension (a png, svg, pdf, jpg or jpeg extension given
            is replaced; any other suffix is kept as part of the name).
        formats: matplotlib format names (``"png"``, ``"svg"``, ``"pdf"``).
        dpi: Resolution of raster formats.

    Returns:
        The paths written, in the order of ``formats``.

    Example:
        >>> import tempfile, matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     [p.name for p in save_figure(fig, f"{folder}/demo")]
        ['demo.png', 'demo.svg']
        >>> plt.close(fig)
    """
    if not formats:
        raise ValueError("give at least one format, e.g. formats=('png',)")
    stem = Path(path_stem)
    if stem.suffix.lstrip(".") in {"png", "svg", "pdf", "jpg", "jpeg"}:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else None  # no timestamp: stable files
        with matplotlib.rc_context({"svg.hashsalt": RC_PARAMS["svg.hashsalt"]}):
            fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight")
        target = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write_bytes(target, buffer.getvalue())
        written.append(target)
    return written


def precision_lines(
    ax: Any,
    formats: Sequence[str] = ("bfloat16", "float16"),
    *,
    color: str = "black",
    label: bool = True,
) -> list[Any]:
    """Horizontal lines at each format's machine epsilon, labelled "2^-7 (bf16 ε)".

    Args:
        ax: Matplotlib Axes.
        formats: Format names (:func:`~oversquash_lens.get_format`).
        color: Line colour.
        label: Give the lines legend labels.

    Returns:
        The lines drawn.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> [line.get_label() for line in precision_lines(ax)]
        ['2^-7 (bf16 ε)', '2^-10 (fp16 ε)']
        >>> plt.close(fig)
    """
    lines = []
    for index, name in enumerate(formats):
        fmt = get_format(name)
        text = f"2^-{fmt.mantissa_bits} ({_short_format(fmt.name)} ε)" if label else None
        style_ = _FORMAT_LINESTYLES[index % len(_FORMAT_LINESTYLES)]
        lines.append(
            ax.axhline(machine_epsilon(fmt), ls=style_, color=color, lw=1, label=text, zorder=1)
        )
    return lines


def log_axes(ax: Any, *, x: bool = False, y: bool = True, minor_grid: bool = False) -> Any:
    """Log-scale the chosen axes (base 10), optionally with a faint minor grid.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> log_axes(ax, x=True).get_xscale()
        'log'
        >>> plt.close(fig)
    """
    if x:
        ax.set_xscale("log")
    if y:
        ax.set_yscale("log")
    if minor_grid:
        ax.grid(True, which="minor", alpha=0.12, linewidth=0.4)
    return ax


def _short_format(name: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float64": "fp64"}.get(
        name, name
    )
