"""The documentation site: its hooks (scripts/docs_hooks.py) and checker (scripts/check_site.py).

Builds tiny throwaway MkDocs projects with the repository's own ``mkdocs.yml`` settings
and hooks (a few seconds each), and unit-tests the pieces: the docstring check, the
README link rewriting, the notebook conversion and the site checker.
"""

import base64
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import griffe
import jupytext
import nbformat
import pytest
import yaml
from nbformat.v4 import new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
VIEW = '<div id="v"></div><script>document.getElementById("v").textContent = "<b>" + 1;</script>'


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


hooks = _load("docs_hooks")
check_site = _load("check_site")


# --------------------------------------------------------------------------- a tiny project

PACKAGE = '''"""A demo package.

Uses :func:`shout` and :class:`~demo_pkg.Thing`; :func:`not_here` is only code.
"""

__all__ = ["Thing", "shout", "LIMIT"]

LIMIT = 3
"""How loud."""


class Thing:
    """A thing. See [the function][demo_pkg.shout]."""


def shout(text: str) -> str:
    """Say it louder.

    Args:
        text: What to say.

    Returns:
        The text, upper case.

    Example:
        >>> shout("a")[0][0]
        'A'
    """
    return text.upper()
'''
TUTORIAL = '''"""Tutorial 01: a demo."""

# %% [markdown]
# # 01 — Demo
#
# See [the guide](../docs/guide.md) and [the license](../LICENSE).

# %%
print("hello")
'''


def _notebook(tutorial: str = TUTORIAL) -> nbformat.NotebookNode:
    """The tutorial as an executed notebook, by hand: a stream, a PNG and an HTML view."""
    notebook = jupytext.reads(tutorial, fmt="py:percent")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    code.outputs = [
        new_output("stream", name="stdout", text="hello\n"),
        new_output("display_data", data={"image/png": base64.b64encode(PNG).decode()}),
        new_output("display_data", data={"text/html": VIEW, "text/plain": "<view>"}),
    ]
    notebook.metadata["oversquash_lens"] = {"mode": "fast", "model": "tiny-llama"}
    return notebook


def _config(project: Path) -> None:
    """The repository's mkdocs.yml, pointed at the demo package, with a small nav."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config["hooks"] = [str(ROOT / "scripts" / "docs_hooks.py")]
    python = config["plugins"][0]["mkdocstrings"]["handlers"]["python"]
    python["options"]["extensions"] = [f"{ROOT / 'scripts' / 'docs_hooks.py'}:DocstringMarkup"]
    config["extra"]["osl_docs"]["package"] = "demo_pkg"
    config["nav"] = [
        {"Home": "index.md"},
        {"Guide": "guide.md"},
        {"Tutorials": []},
        {"API reference": []},
    ]
    (project / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")


def _project(root: Path) -> Path:
    """A tiny project: README, one docs page with an image, a package, one tutorial."""
    project = root / "project"
    for folder in ("docs", "demo_pkg", "tutorials", "notebooks"):
        (project / folder).mkdir(parents=True)
    (project / "README.md").write_text(
        "# Demo\n\nRead [the guide](docs/guide.md), [tutorial 01](tutorials/01_demo.py) and"
        " [the license](LICENSE).\n\n![a picture](docs/pic.png)\n",
        encoding="utf-8",
    )
    (project / "LICENSE").write_text("MIT\n", encoding="utf-8")
    (project / "docs" / "guide.md").write_text("# Guide\n\n![pic](pic.png)\n", encoding="utf-8")
    (project / "docs" / "pic.png").write_bytes(PNG)
    (project / "demo_pkg" / "__init__.py").write_text(PACKAGE, encoding="utf-8")
    (project / "tutorials" / "01_demo.py").write_text(TUTORIAL, encoding="utf-8")
    nbformat.write(_notebook(), project / "notebooks" / "01_demo.ipynb")
    _config(project)
    return project


def _build(project: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != hooks.NOTEBOOKS_ENV}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", "site"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project, built once with --strict."""
    project = _project(tmp_path_factory.mktemp("good"))
    result = _build(project)
    assert result.returncode == 0, result.stderr
    return project / "site"


def test_good_project_builds_every_kind_of_page(built: Path) -> None:
    home = (built / "index.html").read_text(encoding="utf-8")
    assert 'href="guide.html"' in home and 'href="tutorials/01_demo.html"' in home
    assert 'src="pic.png"' in home and "the license" in home and 'href="LICENSE"' not in home
    tutorial = (built / "tutorials" / "01_demo.html").read_text(encoding="utf-8")
    assert VIEW in tutorial  # the view's script exactly as the notebook had it
    assert "fast mode" in tutorial and "tiny-llama" in tutorial
    assert 'href="../guide.html"' in tutorial
    assert (built / "tutorials" / "01_demo_files" / "cell02_1.png").read_bytes() == PNG
    reference = (built / "reference" / "index.html").read_text(encoding="utf-8")
    assert "Say it louder." in reference and "How loud." in reference
    assert 'href="#demo_pkg.shout"><code>shout</code></a>' in reference  # :func:`shout`
    assert 'href="#demo_pkg.Thing"><code>Thing</code></a>' in reference  # :class:`~...Thing`
    assert "<code>not_here</code>" in reference and ":func:" not in reference  # plain code
    assert "&gt;&gt;&gt;" in reference  # the Example: doctest shows as code, not as a link
    assert check_site.check_links(built) == []


def _broken(tmp_path: Path, path: str, old: str, new: str) -> subprocess.CompletedProcess[str]:
    """Build the tiny project with one file edited (``old`` replaced by ``new``)."""
    project = _project(tmp_path)
    file = project / path
    text = file.read_text(encoding="utf-8")
    assert old in text
    file.write_text(text.replace(old, new), encoding="utf-8")
    return _build(project)


def test_broken_cross_reference_fails_the_build(tmp_path: Path) -> None:
    result = _broken(tmp_path, "demo_pkg/__init__.py", "[demo_pkg.shout]", "[demo_pkg.nope]")
    assert result.returncode != 0
    assert "demo_pkg.nope" in result.stderr


def test_broken_page_link_fails_the_build(tmp_path: Path) -> None:
    result = _broken(tmp_path, "docs/guide.md", "![pic](pic.png)", "[gone](nope.md)")
    assert result.returncode != 0
    assert "nope.md" in result.stderr


def test_missing_docstring_fails_the_build(tmp_path: Path) -> None:
    result = _broken(tmp_path, "demo_pkg/__init__.py", '"""How loud."""', "# (none)")
    assert result.returncode != 0
    assert "demo_pkg.LIMIT: public name without a docstring" in result.stderr


def test_build_without_notebooks_says_to_make_them(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "notebooks" / "01_demo.ipynb").unlink()
    result = _build(project)
    assert result.returncode != 0
    assert "no executed notebooks" in result.stderr and "make notebooks" in result.stderr


def test_stale_notebook_fails_the_build(tmp_path: Path) -> None:
    result = _broken(tmp_path, "tutorials/01_demo.py", 'print("hello")', 'print("changed")')
    assert result.returncode != 0
    assert "holds other code than tutorials/01_demo.py" in result.stderr


# --------------------------------------------------------------------------- docstrings


def _package(root: Path, files: dict[str, str]) -> griffe.Module:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    package = griffe.load("pkg", search_paths=[str(root)])
    assert isinstance(package, griffe.Module)
    return package


def test_undocumented_names_are_found(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": '"""Top."""\n__all__ = ["ok", "bare", "VALUE", "ghost", "sub"]\n'
            "from . import sub\nfrom ._impl import bare, ok\nVALUE = 1\n",
            "_impl.py": 'def ok():\n    """Fine."""\n\n\ndef bare():\n    pass\n',
            "sub/__init__.py": '"""Sub."""\n\n\ndef f():\n    pass\n',
            "_private/__init__.py": '__all__ = ["g"]\n\n\ndef g():\n    pass\n',
        },
    )
    assert sorted(hooks.undocumented(package)) == [
        "pkg.VALUE: public name without a docstring",
        "pkg.bare: public name without a docstring",
        "pkg.ghost: in __all__ but not defined",
        "pkg.sub: public module without __all__",
    ]


def test_documented_package_passes(tmp_path: Path) -> None:
    package = _package(
        tmp_path, {"__init__.py": '"""Top."""\n__all__ = ["V"]\nV = 1\n"""The value."""\n'}
    )
    assert hooks.undocumented(package) == []


def test_repository_package_is_fully_documented() -> None:
    settings = hooks.Settings(root=ROOT, package="oversquash_lens")
    assert hooks.undocumented(hooks.load_package(settings)) == []


def test_roles_become_links_only_to_documented_objects(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": '"""Top."""\n__all__ = ["f"]\nfrom ._impl import f\n',
            "_impl.py": 'def f():\n    """F."""\n\n\ndef _g():\n    """G."""\n',
        },
    )
    homes = hooks.home_paths(hooks.public_modules(package))
    text = ":func:`f`, :func:`~pkg._impl.f`, :func:`_g`, :class:`torch.Tensor`"
    converted = hooks.convert_roles(text, package["_impl"], homes)
    assert converted == "[`f`][pkg.f], [`f`][pkg.f], `_g`, `torch.Tensor`"
    assert hooks.strip_roles("a :meth:`~x.Y.f` b\n```\n:func:`g`\n```\n") == (
        "a `f` b\n```\n:func:`g`\n```\n"
    )
    assert hooks.examples_sections("Doc.\n\n    Example:\n        >>> 1\n") == (
        "Doc.\n\n    Examples:\n        >>> 1\n"
    )


# --------------------------------------------------------------------------- links


@pytest.fixture
def links(tmp_path: Path) -> object:
    for path in ("docs/results.md", "docs/tutorials.md", "docs/img/a.png", "LICENSE"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x", encoding="utf-8")
    (tmp_path / "benchmarks").mkdir()
    return hooks.LinkMap(
        root=tmp_path,
        docs="docs",
        pages={"README.md": "index.md", "tutorials/01_q.py": "tutorials/01_q.md"},
        folders={"tutorials": "tutorials.md"},
        generated=frozenset({"index.md", "tutorials/01_q.md"}),
    )


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[`docs/results.md`](docs/results.md)", "[`docs/results.md`](results.md)"),
        ("[r](docs/results.md#fields)", "[r](results.md#fields)"),
        ("![fig](docs/img/a.png)", "![fig](img/a.png)"),
        ('[r](docs/results.md "title")', '[r](results.md "title")'),
        ("[one](tutorials/01_q.py)", "[one](tutorials/01_q.md)"),
        ("[`tutorials/`](tutorials)", "[`tutorials/`](tutorials.md)"),
        ("[MIT](LICENSE) and [b](benchmarks/)", "MIT and b"),
        ("[gone](docs/gone.md)", "[gone](docs/gone.md)"),  # left for MkDocs to report
        ("[web](https://example.org/docs/x.md) [top](#install)", None),
        ("`[r](docs/results.md)` in code", None),
        ("```\n[r](docs/results.md)\n```\n", None),
        ("````md\n```\n[r](docs/results.md)\n```\n````\n[r](docs/results.md)", "END"),
    ],
)
def test_readme_links_are_rewritten_for_the_site(
    links: object, markdown: str, expected: str | None
) -> None:
    result = hooks.rewrite_links(markdown, source="README.md", page="index.md", links=links)
    if expected == "END":  # only the link after the (nested) fence changes
        assert result == markdown[: -len("docs/results.md)")] + "results.md)"
    else:
        assert result == (markdown if expected is None else expected)


def test_docs_page_links_out_of_docs(links: object) -> None:
    page = "[`tutorials/`](../tutorials) then [one](../tutorials/01_q.py) and [r](results.md)"
    result = hooks.rewrite_links(page, source="docs/tutorials.md", page="tutorials.md", links=links)
    assert result == "`tutorials/` then [one](tutorials/01_q.md) and [r](results.md)"
    deep = hooks.rewrite_links("[r](../../docs/results.md)", source="tutorials/01_q.py",
                               page="tutorials/01_q.md", links=links)  # fmt: skip
    assert deep == "[r](../../docs/results.md)"  # outside the repository: kept, reported
    cell = hooks.rewrite_links(
        "[r](../docs/results.md)", source="tutorials/01_q.py", page="tutorials/01_q.md", links=links
    )
    assert cell == "[r](../results.md)"


# --------------------------------------------------------------------------- notebooks


def test_notebook_becomes_a_page_with_its_outputs() -> None:
    notebook = new_notebook(
        cells=[new_markdown_cell("# 07 — Title\n\nIntro.")] + _notebook().cells[-1:],
        metadata={"oversquash_lens": {"mode": "fast", "model": "tiny-llama"}},
    )
    notebook.cells[-1].outputs.append(
        new_output("execute_result", data={"text/plain": "42"}, execution_count=1)
    )
    page = hooks.notebook_page(notebook, page="tutorials/07_t.md", source="tutorials/07_t.py")
    markdown = page.markdown
    assert markdown.startswith("# 07 — Title\n\n!!! note")  # the note right under the title
    assert "fast mode (tiny sizes) on the tiny model `tiny-llama`" in markdown
    assert '```python\nprint("hello")\n```' in markdown
    assert "```{.text .output}\nhello\n```" in markdown
    assert "```{.text .output}\n42\n```" in markdown
    assert "![output](07_t_files/cell01_1.png)" in markdown
    assert page.files == {"tutorials/07_t_files/cell01_1.png": PNG}
    ((placeholder, html),) = page.html.items()
    assert html == VIEW and placeholder in markdown and VIEW not in markdown
    assert markdown.index("hello\n```") < markdown.index("![output]") < markdown.index(placeholder)
    assert page.problems == []


def test_notebook_error_outputs_and_modes_are_reported() -> None:
    notebook = _notebook()
    notebook.cells[-1].outputs = [
        new_output(
            "error", ename="ValueError", evalue="bad", traceback=["\x1b[31mValueError\x1b[0m"]
        )
    ]
    notebook.metadata = {}
    page = hooks.notebook_page(notebook, page="tutorials/01_demo.md", source="tutorials/01_demo.py")
    assert page.problems == ["cell 2 raised ValueError"]
    assert "```{.text .output}\nValueError\n```" in page.markdown  # colours dropped
    assert "a mode the notebook does not record" in page.markdown
    assert 'Tutorial 01: a demo."""' not in page.markdown  # the docstring cell is left out
    assert hooks.clean_stream("10%\r50%\r100%\nok") == "100%\nok"
    assert hooks.fenced("a ``` b", "text").startswith("````text\n")


# --------------------------------------------------------------------------- check_site


def _site(root: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"<html><head></head><body>{body}</body></html>")
    return root


def test_site_checker_finds_broken_and_unreachable_pages(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        {
            "index.html": '<a href="a/b.html#here">b</a> <a href="missing.html">m</a>'
            '<a href="https://example.org">web links are fine</a><img src="x.png">',
            "a/b.html": '<h2 id="here">b</h2><a href="../index.html#nowhere">back</a>'
            '<script src="https://cdn.example.org/x.js"></script>',
            "orphan.html": "nobody links here",
            "404.html": '<a href="/absolute">servers only</a>',
        },
    )
    assert sorted(check_site.check_links(site)) == [
        "a/b.html: <script> loads https://cdn.example.org/x.js from the network",
        "a/b.html: link ../index.html#nowhere: no id 'nowhere' on index.html",
        "index.html: <a> points to missing.html, which is not in the site",
        "index.html: <img> points to x.png, which is not in the site",
        "orphan.html: not reachable by links from index.html",
    ]


def test_site_checker_sees_script_errors_in_the_browser(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.browser import require_chromium

    require_chromium()
    site = _site(
        tmp_path / "site",
        {
            "index.html": '<a href="bad.html">bad</a>',
            "bad.html": "<script>undefinedFunction();</script>"
            '<div id="osl-0" class="osl-cv"></div><img src="https://example.org/p.png">',
        },
    )
    copy = check_site.copy_site(site, tmp_path / "scratch")
    assert check_site.check_page(copy, "index.html") == []
    problems = check_site.check_page(copy, "bad.html")
    assert any("undefinedFunction is not defined" in p for p in problems), problems
    assert any("requested https://example.org/p.png" in p for p in problems), problems
    assert "bad.html: view osl-0 did not render" in problems
    assert "data-osl-errors" not in (site / "bad.html").read_text()  # the site is untouched
