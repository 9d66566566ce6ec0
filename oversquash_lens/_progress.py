"""One progress bar for every long loop: a widget in a notebook that can draw one, text elsewhere.

``tqdm.auto`` picks the notebook widget inside a Jupyter kernel, but where ``ipywidgets``
is not installed it falls back to the text bar with a ``TqdmWarning`` in the cell. Here
the same choice is made without the warning: the widget only when a kernel is running
and ``ipywidgets`` can be imported (an optional dependency, imported only then).
"""

import importlib.util
import sys
from typing import Any

from tqdm.std import tqdm as text_bar


def in_kernel() -> bool:
    """True when this code runs inside a Jupyter kernel (not merely with ipykernel imported).

    Example:
        >>> in_kernel()  # a doctest runs in a plain interpreter
        False
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def widgets_usable() -> bool:
    """True inside a Jupyter kernel that has ``ipywidgets`` to draw tqdm's widget."""
    return in_kernel() and importlib.util.find_spec("ipywidgets") is not None


def progress_bar(iterable: Any = None, **options: Any) -> Any:
    """A tqdm bar over ``iterable`` (tqdm's ``total``/``desc``/``unit``/``disable`` options).

    Example:
        >>> bar = progress_bar(range(3), disable=True)
        >>> list(bar)
        [0, 1, 2]
    """
    if widgets_usable():
        from tqdm.notebook import tqdm as widget_bar  # optional: needs ipywidgets

        return widget_bar(iterable, **options)
    return text_bar(iterable, **options)
