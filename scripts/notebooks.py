"""Run the tutorials as real notebooks: Jupytext converts, a Jupyter kernel executes.

Usage::

    .venv/bin/python scripts/notebooks.py                 # every tutorial, fast mode
    .venv/bin/python scripts/notebooks.py --out nb 01 04  # some of them, elsewhere
    .venv/bin/python scripts/notebooks.py --full          # full sizes on SmolLM2 (slow)

Each ``tutorials/NN_*.py`` percent script becomes ``<out>/NN_*.ipynb`` with its outputs:
text, matplotlib figures as PNG, and the offline HTML views. By default the tutorials
run in their fast mode on ``tiny-llama`` (what CI runs), so the figures are tiny-model
figures; ``--full`` gives the real ones. ``make notebooks`` runs this.

``tests/test_notebooks.py`` uses :func:`execute` and :func:`problems` on every tutorial.
"""

import argparse
import ast
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
# The inline backend: plt.show() in a kernel sends each figure to the notebook as a PNG.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
WARNING = re.compile(r"\b\w*Warning\b|\bwarn(ing)?:", re.IGNORECASE)


def tutorials(names: list[str] | None = None) -> list[Path]:
    """The tutorial scripts, all or those whose file name starts with one of ``names``."""
    found = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
    if names:
        found = [p for p in found if any(p.name.startswith(n) for n in names)]
    return found


def execute(
    script: Path, *, out: Path, fast: bool = True, model: str = "tiny-llama", timeout: int = 900
) -> Any:
    """The tutorial as a notebook, executed in a fresh Jupyter kernel (outputs kept).

    Args:
        script: A percent-format tutorial.
        out: Folder for the files the tutorial writes (its figures, results, views).
        fast: Tiny sizes (the tutorials' ``--fast``).
        model: Any ``osl.load_model`` name.
        timeout: Seconds one cell may take.

    Returns:
        The executed ``nbformat`` notebook. A cell that raises raises
        ``nbclient.exceptions.CellExecutionError`` here, with the cell's traceback.
    """
    notebook = jupytext.read(script)
    if notebook.cells and _only_a_docstring(notebook.cells[0]):
        del notebook.cells[0]  # the script's docstring: the first markdown cell says more
    env = {
        "OSL_TUTORIAL_FAST": "1" if fast else "0",
        "OSL_TUTORIAL_MODEL": model,
        "OSL_TUTORIAL_OUT": str(out),
        "MPLBACKEND": INLINE_BACKEND,
        "PYTHONWARNINGS": "default",  # show every warning once, so a test can see it
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(TUTORIALS)}},  # `import _common` works
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def _only_a_docstring(cell: Any) -> bool:
    try:
        body = ast.parse(cell.source).body
    except SyntaxError:
        return False
    if cell.cell_type != "code" or len(body) != 1 or not isinstance(body[0], ast.Expr):
        return False
    value = body[0].value
    return isinstance(value, ast.Constant) and isinstance(value.value, str)


def outputs(notebook: Any) -> list[tuple[int, dict[str, Any]]]:
    """Every output of every code cell, as (cell index, output)."""
    return [
        (index, output)
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]


def problems(notebook: Any) -> list[str]:
    """What a reader should never see: error outputs, tracebacks and warnings in any cell."""
    found = []
    for index, output in outputs(notebook):
        kind = output.get("output_type")
        if kind == "error":
            found.append(f"cell {index} raised {output.get('ename')}: {output.get('evalue')}")
        elif kind == "stream":
            text = output.get("text", "")
            if "Traceback" in text or WARNING.search(text):
                found.append(f"cell {index} printed to {output.get('name')}: {text[:500]}")
    return found


def main() -> int:
    """Write executed notebooks; exit 1 if any tutorial failed or showed a problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorial name prefixes (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks", help="folder for .ipynb")
    parser.add_argument("--full", action="store_true", help="full sizes on --model")
    parser.add_argument("--model", default=None, help="default: tiny-llama, --full: smollm2-135m")
    args = parser.parse_args()
    model = args.model or ("smollm2-135m" if args.full else "tiny-llama")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for script in tutorials(args.names):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as files:
            notebook = execute(script, out=Path(files), fast=not args.full, model=model)
        notebook.metadata["oversquash_lens"] = {"mode": "full" if args.full else "fast"}
        notebook.metadata["oversquash_lens"]["model"] = model
        target = args.out / script.with_suffix(".ipynb").name
        temporary = target.with_name(f".{target.name}.tmp")
        nbformat.write(notebook, temporary)
        temporary.replace(target)
        found = problems(notebook)
        failed += bool(found)
        print(
            f"{target} ({time.perf_counter() - start:.0f} s)" + "".join(f"\n  {p}" for p in found)
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
