"""The circuitsvis bundle shipped in its wheel, read from disk; once per notebook or page.

Every offline view needs CircuitsVis's JavaScript. It is read from the installed
circuitsvis package (``circuitsvis/dist/cdn/iife.js``), never fetched; in a notebook it
is sent with the first view only (see :func:`notebook_bundle`).
"""

import functools
import importlib.metadata
import importlib.util
import re
from pathlib import Path

from .._errors import BackendUnavailableError
from .._progress import in_kernel


@functools.cache
def bundle_path() -> Path:
    """Where the installed circuitsvis wheel keeps its JavaScript bundle.

    Found with ``importlib.util.find_spec`` (circuitsvis's Python code is not imported).

    Raises:
        BackendUnavailableError: If circuitsvis or its bundle is not installed.

    Example:
        >>> bundle_path().name
        'iife.js'
    """
    spec = importlib.util.find_spec("circuitsvis")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "dist" / "cdn" / "iife.js"
        if path.is_file():
            return path
    raise BackendUnavailableError(
        "the circuitsvis JavaScript bundle (circuitsvis/dist/cdn/iife.js) was not found: "
        "install circuitsvis (pip install circuitsvis) to render HTML views"
    )


@functools.cache
def bundle() -> str:
    """The circuitsvis bundle, made safe to inline in a ``<script>`` element.

    The only change: ``</script`` inside the bundle's strings gets a backslash before
    the slash (the same JavaScript string), so the HTML parser does not end the element
    early.

    Example:
        >>> bundle().startswith('"use strict";var CircuitsVis=')
        True
    """
    text = bundle_path().read_text(encoding="utf-8")
    text = re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)
    return text.replace("<!--", "<\\!--")


def circuitsvis_version() -> str:
    """Version of the installed circuitsvis distribution ("unknown" if it has no metadata)."""
    try:
        return importlib.metadata.version("circuitsvis")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------- notebooks
BUNDLE_MODES = ("auto", "once", "every")
_notebook = {"mode": "auto", "sent": False}
# Shown in place of a view whose output has no bundle when the bundle is not loaded.
_MISSING_BUNDLE = (
    '<script>if (typeof CircuitsVis === "undefined") {document.currentScript.insertAdjacentHTML('
    '"afterend", "<p class=\\"osl-note\\">This view uses the circuitsvis bundle that the first '
    "view shown in this notebook inlined, and it is not loaded here: run that cell again, or "
    "call oversquash_lens.render.notebook_bundle('every') and show this view again.</p>\");}"
    "</script>"
)


def notebook_bundle(mode: str = "auto") -> None:
    """How views shown in a notebook carry the circuitsvis bundle (about 1.3 MB).

    Args:
        mode: ``"auto"`` (the default): inside a Jupyter kernel, the first view shown
            inlines the bundle and later views use it, so a notebook holds one copy;
            elsewhere every ``_repr_html_`` is self-contained. ``"once"``: one copy per
            process wherever it runs. ``"every"``: each view's output inlines its own copy,
            for front ends that isolate each output (an output in its own iframe) or after
            clearing the first view's output.

    Calling it also forgets that the bundle was sent: the next view inlines it again.

    Example:
        >>> from oversquash_lens import render
        >>> view = render.colored_tokens(["a"], [1.0])
        >>> render.notebook_bundle("once")
        >>> [view._repr_html_().count(render.bundle()) for _ in range(2)]
        [1, 0]
        >>> render.notebook_bundle("every")
        >>> [view._repr_html_().count(render.bundle()) for _ in range(2)]
        [1, 1]
        >>> render.notebook_bundle()  # back to the default
    """
    if mode not in BUNDLE_MODES:
        raise ValueError(f"notebook_bundle mode must be one of {BUNDLE_MODES}, got {mode!r}")
    _notebook.update(mode=mode, sent=False)


def notebook_prelude() -> str:
    """The bundle's ``<script>`` for this notebook output, or a guard if it was sent."""
    mode = _notebook["mode"]
    once = mode == "once" or (mode == "auto" and in_kernel())
    if once and _notebook["sent"]:
        return _MISSING_BUNDLE
    _notebook["sent"] = once
    return f"<script>{bundle()}</script>"
