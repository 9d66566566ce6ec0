"""The tutorials as real notebooks: Jupytext converts, a Jupyter kernel runs them (fast mode).

Each tutorial is executed once (module fixture) by ``scripts/notebooks.py`` in a fresh
ipykernel. The tests then read the outputs a reader would see: no error, traceback or
warning; every figure an ``image/png`` output; every view an ``text/html`` output, the
circuitsvis bundle inlined once per notebook; the views rendered offline in chromium.
"""

import base64
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import jupytext
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from oversquash_lens import render

from .browser import open_page
from .test_browser import check_offline
from .test_tutorials import EXPECTED, PNG_MAGIC

ROOT = Path(__file__).resolve().parent.parent
# Tutorials that show views in a notebook, and how many outputs hold them.
VIEWS = {"01_quickstart.py": 2, "04_oversquashing.py": 1}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("osl_notebooks", ROOT / "scripts/notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


notebooks = _load_script()


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every tutorial executed once, in its fast mode on tiny-llama (~10-15 s each here)."""
    done = {}
    for script in notebooks.tutorials():
        out = tmp_path_factory.mktemp(script.stem)
        done[script.name] = notebooks.execute(script, out=out, timeout=300)
    return done


def html_outputs(notebook: Any) -> list[str]:
    return [
        "".join(o["data"]["text/html"])
        for _, o in notebooks.outputs(notebook)
        if "text/html" in o.get("data", {})
    ]


def png_outputs(notebook: Any) -> list[bytes]:
    return [
        base64.b64decode(o["data"]["image/png"])
        for _, o in notebooks.outputs(notebook)
        if "image/png" in o.get("data", {})
    ]


def test_every_tutorial_runs_as_a_notebook(executed: dict[str, Any]) -> None:
    assert set(executed) == set(EXPECTED)
    for name, notebook in executed.items():
        assert notebooks.problems(notebook) == [], name
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{name}: a cell did not run"
        assert "done in" in "".join(o.get("text", "") for _, o in notebooks.outputs(notebook))


def test_figures_are_image_outputs(executed: dict[str, Any]) -> None:
    for name, notebook in executed.items():
        images = png_outputs(notebook)
        figures = [f for f in EXPECTED[name] if f.endswith(".png")]
        assert len(images) >= len(figures), f"{name}: {len(images)} images for {figures}"
        assert all(png.startswith(PNG_MAGIC) and len(png) > 1000 for png in images), name


def test_views_inline_the_bundle_once_per_notebook(executed: dict[str, Any]) -> None:
    bundle = render.bundle()
    for name, notebook in executed.items():
        outputs = html_outputs(notebook)
        assert len(outputs) == VIEWS.get(name, 0), f"{name}: {len(outputs)} HTML outputs"
        if not outputs:
            continue
        assert all("CircuitsVis.render(" in text for text in outputs), name
        assert [text.count(bundle) for text in outputs] == [1] + [0] * (len(outputs) - 1)


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_views_render_offline_in_a_browser(
    executed: dict[str, Any], name: str, tmp_path: Path
) -> None:
    # The outputs in order on one page, as a notebook front end shows them.
    outputs = html_outputs(executed[name])
    path = tmp_path / "outputs.html"
    path.write_text('<!DOCTYPE html><meta charset="utf-8">' + "\n".join(outputs), "utf-8")
    run = open_page(path)
    check_offline(run, f"{name} outputs")
    ids = re.findall(r'<div id="([^"]+)" class="osl-cv"', "\n".join(outputs))
    assert ids, name
    empty = [i for i in ids if re.search(rf'<div id="{i}" class="osl-cv"[^>]*></div>', run.dom)]
    assert empty == [], f"{name}: views left empty: {empty}"
    assert "osl-note" not in run.dom.split("</script>")[-1]  # no missing-bundle note


def test_a_view_without_the_bundle_says_what_to_do(tmp_path: Path) -> None:
    render.notebook_bundle("once")
    try:
        view = render.colored_tokens(["a"], [1.0])
        first, second = view._repr_html_(), view._repr_html_()
    finally:
        render.notebook_bundle()
    assert render.bundle() in first and render.bundle() not in second
    path = tmp_path / "second.html"
    path.write_text(f'<!DOCTYPE html><meta charset="utf-8">{second}', "utf-8")
    run = open_page(path)
    assert "notebook_bundle('every')" in run.dom


def _notebook(*sources: str) -> Any:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_the_checks_see_a_broken_view_and_a_warning(tmp_path: Path) -> None:
    # A view whose _repr_html_ raises: IPython shows the traceback as an error output
    # and the cell still "succeeds", so only the output check can catch it.
    broken = (
        "class View:\n"
        "    def _repr_html_(self):\n"
        "        raise RuntimeError('broken view')\n"
        "display(View())"
    )
    warning = "import warnings; warnings.warn('careful', UserWarning)"
    script = tmp_path / "99_broken.py"
    jupytext.write(_notebook(broken, warning, "print('done in 0 s')"), script, fmt="py:percent")
    found = notebooks.problems(notebooks.execute(script, out=tmp_path, timeout=60))
    assert any("broken view" in p for p in found), found
    assert any("UserWarning" in p for p in found), found


def test_a_cell_that_raises_fails_the_run(tmp_path: Path) -> None:
    script = tmp_path / "98_raises.py"
    jupytext.write(_notebook("1 / 0"), script, fmt="py:percent")
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        notebooks.execute(script, out=tmp_path, timeout=60)


def test_progress_bars_are_text_where_ipykernel_is_only_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import types

    from oversquash_lens import _progress

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not _progress.in_kernel() and not _progress.widgets_usable()
    assert type(_progress.progress_bar(range(2), disable=True)).__module__ == "tqdm.std"
