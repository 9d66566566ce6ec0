"""MkDocs hooks: the site's generated pages, and the checks that make ``--strict`` fail.

Wired in by ``hooks:`` in ``mkdocs.yml``. Everything is generated in memory at build time
(``File.generated``); nothing is written into ``docs/``, so nothing can go stale there:

- ``index.md`` from ``README.md``, its links rewritten for the site (``rewrite_links``);
- ``tutorials/NN_name.md`` and its figures from the executed ``notebooks/NN_name.ipynb``
  (``notebook_page``); without executed notebooks the build stops: run ``make notebooks``;
- ``reference/<module>.md`` for the package and each public subpackage, documenting the
  names in its ``__all__`` (``reference_page``);
- ``assets/site.css``: pygments' colours (code is highlighted at build time, not by
  highlight.js from a CDN) and a few rules for the reference and tutorial pages.

Checks log a warning on a ``mkdocs.plugins.*`` logger, which ``--strict`` turns into a
failed build: a public name without a docstring (``undocumented``), a tutorial without an
executed notebook or with a notebook of other code, an error output in a notebook.
The docs pages' links to repository files that are not on the site are rewritten the same
way as the README's (links to files that do not exist are left for MkDocs to report), and
Sphinx roles copied into them from docstrings show as plain code.

``DocstringMarkup`` is a griffe extension (``extensions:`` of the mkdocstrings handler): it
turns the docstrings' ``:class:`X``` roles into cross-references where ``X`` is documented
on the site (plain code elsewhere), and their ``Example:`` sections into examples.

``OSL_DOCS_NOTEBOOKS=FOLDER`` builds the tutorials from another folder of notebooks.
"""

from __future__ import annotations

import ast
import base64
import logging
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import griffe
import nbformat
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

LOG = logging.getLogger("mkdocs.plugins.osl_docs")
NOTEBOOKS_ENV = "OSL_DOCS_NOTEBOOKS"
MAKE_NOTEBOOKS = "run `make notebooks` first (it writes notebooks/ with scripts/notebooks.py)"
SITE_CSS = "assets/site.css"
SITE_RULES = """
.wy-nav-content { max-width: 1100px; }
h2.doc-heading { margin-top: 2.5rem; border-top: 1px solid #e1e4e5; padding-top: 1rem; }
.rst-content div.highlight pre { border: 0; margin: 0; padding: 0; }
.rst-content div.highlight pre code { border: 0; }
.rst-content div.output pre code { border-left: 3px solid #8fa9bf; background: #f4f6f8; }
.osl-output { overflow-x: auto; margin-bottom: 1.5rem; }
img { max-width: 100%; height: auto; }
"""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Where the generated pages come from (``extra.osl_docs`` in ``mkdocs.yml``).

    Attributes:
        root: The folder of ``mkdocs.yml`` (the repository root); the paths below are
            relative to it.
        package: The package whose public modules get a reference page.
        readme: The file that becomes the home page.
        notebooks: The folder of executed notebooks (``OSL_DOCS_NOTEBOOKS`` overrides it).
        tutorials: The folder of the percent-format tutorial scripts.
        tutorials_page: The docs page that stands for the tutorials folder.
        tutorial_section: The nav section the tutorial pages are appended to.
        reference_section: The nav section the reference pages are appended to.
    """

    root: Path
    package: str
    readme: str = "README.md"
    notebooks: str = "notebooks"
    tutorials: str = "tutorials"
    tutorials_page: str = "tutorials.md"
    tutorial_section: str = "Tutorials"
    reference_section: str = "API reference"

    @classmethod
    def from_config(cls, config: MkDocsConfig) -> Settings:
        """The settings of this build, from ``extra.osl_docs`` and the environment."""
        options = dict(config.extra.get("osl_docs") or {})
        if os.environ.get(NOTEBOOKS_ENV):
            options["notebooks"] = os.environ[NOTEBOOKS_ENV]
        if "package" not in options:
            raise PluginError("mkdocs.yml: extra.osl_docs.package is required")
        return cls(root=Path(config.config_file_path).resolve().parent, **options)


@dataclass
class BuildState:
    """What the hooks generated in this build, for the later events.

    Attributes:
        generated: Docs paths of the Markdown pages made here (links already rewritten).
        html: Per page, the raw HTML to put back in place of each placeholder.
        links: How links to repository files map onto the site.
    """

    generated: set[str] = field(default_factory=set)
    html: dict[str, dict[str, str]] = field(default_factory=dict)
    links: LinkMap | None = None


STATE = BuildState()


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class LinkMap:
    """How a link to a repository path becomes a link on the site.

    Attributes:
        root: The repository root.
        docs: The docs folder, relative to the root (POSIX).
        pages: Repository files shown as generated pages: their docs paths.
        folders: Repository folders that a docs page stands for: that page's docs path.
        generated: Docs paths of the generated pages.
    """

    root: Path
    docs: str
    pages: dict[str, str]
    folders: dict[str, str]
    generated: frozenset[str]

    def resolve(self, repo_path: str) -> tuple[str, str | None]:
        """``("link", docs path)``, ``("text", None)`` or ``("keep", None)`` for a path.

        ``text``: a repository file or folder that is not on the site (the link becomes its
        text). ``keep``: a path that does not exist, left for MkDocs to report.
        """
        if repo_path in self.pages:
            return "link", self.pages[repo_path]
        if repo_path in self.folders:
            return "link", self.folders[repo_path]
        if repo_path == "." or repo_path.startswith("../"):
            return "keep", None
        on_disk = self.root / repo_path
        prefix = f"{self.docs}/"
        if repo_path.startswith(prefix):
            docs_path = repo_path[len(prefix) :]
            if docs_path in self.generated or on_disk.is_file():
                return "link", docs_path
        return ("text", None) if on_disk.exists() else ("keep", None)


_LINK = re.compile(
    r"(?P<bang>!?)\[(?P<text>(?:[^\[\]]|\[[^\[\]]*\])*)\]"
    r"\((?P<target>[^()\s]+)(?P<title>\s+\"[^\"]*\")?\)"
)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a fenced block opened by ``fence``."""
    mark = line.strip()
    return len(mark) >= len(fence) and set(mark) == {fence[0]}


def _split_fences(markdown: str) -> Iterator[tuple[str, bool]]:
    """The text in pieces: ``(piece, is_fenced_code)``."""
    piece: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence is None and opening:
            yield "".join(piece), False
            piece, fence = [line], opening.group(1)
        elif fence is not None and _closes(line, fence):
            piece.append(line)
            yield "".join(piece), True
            piece, fence = [], None
        else:
            piece.append(line)
    yield "".join(piece), fence is not None


def _rewrite_prose(text: str, *, source: str, page: str, links: LinkMap) -> str:
    """``rewrite_links`` on text without fenced code."""
    spans = [match.span() for match in _CODE_SPAN.finditer(text)]

    def in_code(position: int) -> bool:
        return any(start <= position < end for start, end in spans)

    def swap(match: re.Match[str]) -> str:
        target = match["target"]
        if in_code(match.start()) or _SCHEME.match(target) or target.startswith(("#", "/")):
            return match[0]
        path, hash_, fragment = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), unquote(path)))
        kind, docs_path = links.resolve(repo_path)
        if kind == "keep":
            return match[0]
        if kind == "text" or (docs_path == page and not fragment):
            return match["text"]
        assert docs_path is not None
        relative = posixpath.relpath(docs_path, posixpath.dirname(page) or ".")
        return (
            f"{match['bang']}[{match['text']}]({relative}{hash_}{fragment}{match['title'] or ''})"
        )

    return _LINK.sub(swap, text)


def rewrite_links(markdown: str, *, source: str, page: str, links: LinkMap) -> str:
    """Markdown links written for the repository, rewritten for the site.

    Args:
        markdown: The text (fenced code and code spans are left alone).
        source: The repository path of the file the text comes from (``README.md``).
        page: The docs path of the page it becomes (``index.md``).
        links: What is on the site.

    Returns:
        The text with each relative link pointing at its page or file on the site, or
        reduced to its text where the target is a repository file or folder that is not
        on the site (an image to its alt text). A link to the page itself becomes text;
        a link to a path that does not exist is kept, for MkDocs to report.
    """
    return "".join(
        piece if fenced else _rewrite_prose(piece, source=source, page=page, links=links)
        for piece, fenced in _split_fences(markdown)
    )


# --------------------------------------------------------------------------- notebooks


@dataclass
class NotebookPage:
    """A notebook as a Markdown page.

    Attributes:
        markdown: The page.
        files: The page's images: docs path to content.
        html: Placeholder in ``markdown`` to the raw HTML output it stands for (put back
            into the page's HTML after Markdown, so scripts stay exactly as they were).
        problems: Error outputs found (the notebook's own cells raised).
    """

    markdown: str
    files: dict[str, bytes] = field(default_factory=dict)
    html: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IMAGES = {"image/png": "png", "image/svg+xml": "svg", "image/jpeg": "jpg"}


def fenced(text: str, language: str = "", *, output: bool = False) -> str:
    """``text`` in a fenced code block, with a fence longer than any backtick run in it.

    ``output=True`` marks it as a cell's output (class ``output``, styled apart from code).
    """
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    info = "{.text .output}" if output else language
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def clean_stream(text: str) -> str:
    """Terminal text as it would finally show: colours dropped, ``\\r`` rewrites applied."""
    lines = _ANSI.sub("", text).split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def mode_note(metadata: dict[str, Any], script: str) -> str:
    """The note that says where a tutorial page's outputs come from."""
    run = metadata.get("oversquash_lens") or {}
    model = run.get("model")
    if run.get("mode") == "fast":
        how = f"in its fast mode (tiny sizes) on the tiny model `{model}`"
        caveat = "so its numbers and figures are not the paper's"
    elif run.get("mode") == "full":
        how = f"at full size on `{model}`"
        caveat = "as described on the tutorials page"
    else:
        how, caveat = "in a mode the notebook does not record", "so read its numbers with care"
    return (
        f'!!! note "Outputs from a notebook run"\n    The outputs on this page come from '
        f"running `{script}` as a notebook {how}, {caveat}. `make notebooks` regenerates "
        "them (`scripts/notebooks.py`)."
    )


def _output_block(
    output: dict[str, Any], *, image: str, page: str, placeholder: str
) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """(Markdown, images by docs path, raw HTML by placeholder) for one display output."""
    data = output.get("data", {})
    for mime, extension in _IMAGES.items():
        if mime in data:
            uri, payload = f"{image}.{extension}", str(data[mime])
            content = payload.encode() if extension == "svg" else base64.b64decode(payload)
            relative = posixpath.relpath(uri, posixpath.dirname(page) or ".")
            return f"![output]({relative})", {uri: content}, {}
    if "text/html" in data:
        return placeholder, {}, {placeholder: str(data["text/html"])}
    if "text/markdown" in data:
        return str(data["text/markdown"]), {}, {}
    if "text/plain" in data:
        return fenced(clean_stream(str(data["text/plain"])), output=True), {}, {}
    return "", {}, {}


def _outputs(cell: Any, index: int, page: str, result: NotebookPage) -> list[str]:
    """The Markdown for one code cell's outputs (images and HTML recorded in ``result``)."""
    stem = posixpath.splitext(page)[0]
    blocks = []
    for number, output in enumerate(cell.get("outputs", [])):
        kind = output.get("output_type")
        if kind == "stream":
            blocks.append(fenced(clean_stream(output.get("text", "")), output=True))
        elif kind == "error":
            result.problems.append(f"cell {index} raised {output.get('ename')}")
            blocks.append(fenced(clean_stream("\n".join(output.get("traceback", []))), output=True))
        elif kind in ("display_data", "execute_result"):
            block, images, html = _output_block(
                output,
                image=f"{stem}_files/cell{index:02d}_{number}",
                page=page,
                placeholder=f'<div class="osl-output" data-osl-output="{index}-{number}"></div>',
            )
            result.files.update(images)
            result.html.update(html)
            blocks.append(block)
    return [block for block in blocks if block]


def _is_docstring(code: str) -> bool:
    """Whether ``code`` is nothing but a string literal (a script's docstring)."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    return (
        len(body) == 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def _with_note(markdown: str, note: str) -> str:
    """``note`` after the first level-1 heading of ``markdown`` (or before the text)."""
    lines = markdown.split("\n")
    for number, line in enumerate(lines):
        if line.startswith("# "):
            return "\n".join([*lines[: number + 1], "", note, "", *lines[number + 1 :]])
    return f"{note}\n\n{markdown}"


def notebook_page(
    notebook: Any, *, page: str, source: str, links: LinkMap | None = None
) -> NotebookPage:
    """An executed notebook as a Markdown page, its images and raw HTML beside it.

    Args:
        notebook: An ``nbformat`` notebook (version 4).
        page: The page's docs path (``tutorials/01_quickstart.md``); images go to
            ``tutorials/01_quickstart_files/``.
        source: The repository path of the script it was made from (for the note and
            for links in its Markdown cells).
        links: What is on the site; None leaves the Markdown cells' links alone.

    Returns:
        Markdown cells as Markdown, code as ``python`` fences, streams and plain results as
        text fences of class ``output``, images as files, HTML outputs as placeholders for
        the raw HTML, and a note (after the first heading) on which mode the outputs come
        from. A first code cell that is only a docstring is left out.
    """
    result = NotebookPage(markdown="")
    parts = []
    for index, cell in enumerate(notebook.cells):
        text = str(cell.source)
        if index == 0 and cell.cell_type == "code" and _is_docstring(text):
            continue  # the script's module docstring: the page's heading says it
        if cell.cell_type == "markdown":
            parts.append(
                rewrite_links(text, source=source, page=page, links=links) if links else text
            )
        elif cell.cell_type == "code" and text.strip():
            parts.append(fenced(text, "python"))
            parts.extend(_outputs(cell, index, page, result))
    note = mode_note(dict(notebook.metadata), source)
    result.markdown = _with_note("\n\n".join(parts), note) + "\n"
    return result


def _code_cells(notebook: Any) -> list[str]:
    """The sources of a notebook's non-empty code cells, a docstring-only first one left out."""
    cells = [str(c.source).strip() for c in notebook.cells if c.cell_type == "code"]
    cells = [cell for cell in cells if cell]
    return cells[1:] if cells and _is_docstring(cells[0]) else cells


def stale(notebook: Any, script: Path) -> bool:
    """Whether ``notebook`` holds other code than the percent script ``script``."""
    import jupytext

    return _code_cells(notebook) != _code_cells(jupytext.read(script))


def tutorial_sources(settings: Settings) -> dict[str, Path]:
    """Tutorial stem (``01_quickstart``) to its executed notebook; warns on what is missing.

    Raises:
        PluginError: There is no executed notebook at all.
    """
    folder = settings.root / settings.notebooks
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb")) if folder.is_dir() else []
    if not found:
        raise PluginError(f"no executed notebooks in {folder}: {MAKE_NOTEBOOKS}")
    notebooks = {path.stem: path for path in found}
    scripts = sorted((settings.root / settings.tutorials).glob("[0-9][0-9]_*.py"))
    for script in scripts:
        if script.stem not in notebooks:
            LOG.warning(f"tutorial {script.name} has no notebook in {folder}: {MAKE_NOTEBOOKS}")
    for stem in sorted(set(notebooks) - {script.stem for script in scripts}):
        LOG.warning(f"{notebooks[stem]} has no tutorial script: delete it, or {MAKE_NOTEBOOKS}")
    return notebooks


# --------------------------------------------------------------------------- reference


def public_modules(package: griffe.Module) -> list[griffe.Module]:
    """The package and its public subpackages (no leading underscore), in name order."""
    subpackages = [
        module
        for name, module in sorted(package.modules.items())
        if not name.startswith("_") and module.is_subpackage
    ]
    return [package, *subpackages]


def exports(module: griffe.Module) -> list[str]:
    """The names in a module's ``__all__`` (empty when it has none)."""
    return [str(name) for name in (module.exports or [])]


def _target(obj: griffe.Object | griffe.Alias) -> griffe.Object | griffe.Alias:
    """What an alias finally points to (the object itself if not an alias)."""
    return obj.final_target if isinstance(obj, griffe.Alias) else obj


def _member(module: griffe.Module, name: str) -> griffe.Object | griffe.Alias | None:
    """``module.name`` resolved, or None when it is missing or cannot be resolved.

    A package that rebinds a subpackage's name (``from .pkg import pkg`` beside a ``pkg``
    subpackage) exports what it imported, as Python sees it, not the subpackage griffe
    lists under that name.
    """
    imported = module.imports.get(name)
    try:
        member = module.members[name]
        if member.is_module and imported and imported != member.path:
            return _lookup(module.package, imported)
        return _target(member)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def undocumented(package: griffe.Module) -> list[str]:
    """Every public name (in a public module's ``__all__``) that has no docstring.

    Returns:
        One line per problem, ``module.name: why``: no docstring, not defined, or a public
        module without ``__all__``.
    """
    problems = []
    for module in public_modules(package):
        if module.exports is None:
            problems.append(f"{module.path}: public module without __all__")
        for name in exports(module):
            obj = _member(module, name)
            if obj is None:
                problems.append(f"{module.path}.{name}: in __all__ but not defined")
            elif not (obj.docstring and obj.docstring.value.strip()):
                problems.append(f"{module.path}.{name}: public name without a docstring")
    return problems


def home_paths(modules: list[griffe.Module]) -> dict[str, str]:
    """Canonical path of each public object to the path it is documented under.

    An object exported by several public modules is documented once: in the innermost
    of them that contains its definition, else in the first subpackage exporting it.
    """
    package, subpackages = modules[0], modules[1:]
    candidates: dict[str, list[str]] = {}
    for module in [*subpackages, package]:
        for name in exports(module):
            obj = _member(module, name)
            if obj is not None and not obj.is_module:
                candidates.setdefault(obj.path, []).append(f"{module.path}.{name}")
    homes = {}
    for canonical, paths in candidates.items():
        inside = [path for path in paths if canonical.startswith(f"{_parent(path)}.")]
        homes[canonical] = max(inside, key=lambda path: len(_parent(path))) if inside else paths[0]
    return homes


def _parent(path: str) -> str:
    """``a.b`` for ``a.b.c``."""
    return path.rsplit(".", 1)[0]


def reference_uri(module: griffe.Module, package: griffe.Module) -> str:
    """The docs path of a module's reference page (``reference/analyzers.md``)."""
    name = "index" if module is package else module.path.rsplit(".", 1)[-1]
    return f"reference/{name}.md"


def _summary(obj: griffe.Object | griffe.Alias) -> str:
    """The first line of a docstring, safe inside a Markdown table cell."""
    text = obj.docstring.value.strip().split("\n", 1)[0] if obj.docstring else ""
    return text.replace("|", "\\|")


def _directive(path: str, options: dict[str, str]) -> str:
    """A mkdocstrings ``:::`` block with a few options (values already YAML)."""
    lines = [f"::: {path}", "    options:"]
    lines += [f"      {key}: {value}" for key, value in options.items()]
    return "\n".join(lines)


def _subpackage_rows(package: griffe.Module) -> list[str]:
    """A table row (link and summary) per public subpackage, for the package's page."""
    return [
        f"| [`{module.path}`]({posixpath.basename(reference_uri(module, package))}) "
        f"| {_summary(module)} |"
        for module in public_modules(package)[1:]
    ]


def reference_page(module: griffe.Module, package: griffe.Module, homes: dict[str, str]) -> str:
    """The reference page of one public module, for the names in its ``__all__``.

    Names documented here get their full documentation; names documented on another
    module's page (re-exports) get a table row linking there. The package's page also
    lists every public subpackage.
    """
    here, elsewhere = [], []
    for name in exports(module):
        obj = _member(module, name)
        if obj is None or obj.is_module:
            continue
        if homes.get(obj.path) == f"{module.path}.{name}":
            here.append(name)
        else:
            link = f"[`{name}`][{homes.get(obj.path, obj.path)}]"
            elsewhere.append(f"| {link} | {_summary(obj)} |")
    root = {"members": "false", "show_root_heading": "true", "heading_level": "1"}
    parts = [_directive(module.path, root)]
    if module is package:
        table = "| module | summary |\n| --- | --- |\n" + "\n".join(_subpackage_rows(package))
        parts += ["## Subpackages", table]
    if elsewhere:
        parts += [
            "## Also exported here",
            "Documented on the page of the module that defines them:",
            "| name | summary |\n| --- | --- |\n" + "\n".join(elsewhere),
        ]
    for name in here:
        options = {"show_root_heading": "true", "show_root_full_path": "false"}
        parts.append(_directive(f"{module.path}.{name}", options))
    return "\n\n".join(parts) + "\n"


def load_package(settings: Settings) -> griffe.Module:
    """The package as mkdocstrings sees it: from the repository root, roles converted."""
    package = griffe.load(
        settings.package,
        search_paths=[str(settings.root)],
        docstring_parser="google",
        extensions=griffe.load_extensions(DocstringMarkup()),
    )
    if not isinstance(package, griffe.Module):
        raise PluginError(f"{settings.package} is not a package griffe can load")
    return package


# --------------------------------------------------------------------------- roles


_ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|attr|mod|data|exc|obj|const):"
    r"`(?P<short>[~!]?)(?P<target>[^`]+)`"
)


def _lookup(root: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    """The object at a dotted path under ``root`` (aliases followed), or None."""
    parts = path.split(".")
    if parts[0] != root.name:
        return None
    obj: griffe.Object | griffe.Alias = root
    try:
        for part in parts[1:]:
            obj = _target(obj.members[part])
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return obj


def _resolve_role(target: str, scope: griffe.Object) -> griffe.Object | griffe.Alias | None:
    """What a role's target names, seen from the docstring's object; None if unknown."""
    root = scope.package
    found = _lookup(root, target)
    if found is not None:
        return found
    first, _, rest = target.partition(".")
    try:
        resolved = scope.resolve(first) if scope.parent is None else scope.parent.resolve(first)
    except (griffe.NameResolutionError, griffe.AliasResolutionError, KeyError):
        if scope.is_class and first in scope.members:
            resolved = scope.members[first].path
        else:
            return None
    return _lookup(root, f"{resolved}.{rest}" if rest else resolved)


def documented_path(obj: griffe.Object | griffe.Alias, homes: dict[str, str]) -> str | None:
    """The path ``obj`` has an anchor under on the site, or None if it is not rendered."""
    if obj.path in homes:
        return homes[obj.path]
    if obj.is_module and not any(part.startswith("_") for part in obj.path.split(".")):
        return obj.path
    prefix, rest = obj.path, []
    while "." in prefix:
        prefix, last = prefix.rsplit(".", 1)
        rest.insert(0, last)
        if prefix in homes:
            rendered = obj.docstring is not None and not any(p.startswith("_") for p in rest)
            return f"{homes[prefix]}.{'.'.join(rest)}" if rendered else None
    return None


def convert_roles(text: str, scope: griffe.Object, homes: dict[str, str]) -> str:
    """Sphinx roles in a docstring as autorefs links (when rendered) or as code."""

    def swap(match: re.Match[str]) -> str:
        target = match["target"].strip()
        shown = target.rsplit(".", 1)[-1] if match["short"] == "~" else target
        found = _resolve_role(target, scope)
        path = documented_path(found, homes) if found is not None else None
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    return _ROLE.sub(swap, text)


def strip_roles(markdown: str) -> str:
    """Sphinx roles in Markdown (outside fenced code) as plain code: :func:`~a.f` → `f`."""

    def plain(match: re.Match[str]) -> str:
        target = match["target"].strip()
        return f"`{target.rsplit('.', 1)[-1] if match['short'] == '~' else target}`"

    return "".join(
        piece if fenced else _ROLE.sub(plain, piece) for piece, fenced in _split_fences(markdown)
    )


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and every object defined in it (aliases skipped)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


def examples_sections(text: str) -> str:
    """``Example:`` headers as ``Examples:``, which griffe parses (doctests as code).

    Griffe reads a Google ``Example:`` section as an admonition of Markdown text, where a
    doctest's ``x[0][1]`` would read as a cross-reference; ``Examples:`` is parsed as
    examples, with the ``>>>`` lines and their output as Python code.
    """
    return _EXAMPLE.sub(r"\g<indent>Examples:", text)


class DocstringMarkup(griffe.Extension):
    """Griffe extension: docstrings written for Sphinx and doctest, read as Markdown.

    Sphinx roles (``:func:`f```) become cross-references where the target is documented on
    the site (plain code elsewhere), and ``Example:`` sections become examples sections.
    """

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite every docstring of the package once it is loaded."""
        homes = home_paths(public_modules(pkg))
        for obj in _walk(pkg):
            if obj.docstring is not None:
                text = examples_sections(obj.docstring.value)
                obj.docstring.value = convert_roles(text, obj, homes)


# --------------------------------------------------------------------------- hooks


def _generate(files: Files, config: MkDocsConfig, uri: str, content: str | bytes) -> None:
    """Add a generated file, refusing to shadow a real one in ``docs/``."""
    if files.get_file_from_path(uri) is not None:
        raise PluginError(f"{uri} is generated by the docs hooks: remove it from docs/")
    files.append(File.generated(config, uri, content=content))


def _add_to_nav(
    config: MkDocsConfig, section: str, entries: Sequence[str | dict[str, str]]
) -> None:
    """Append entries to the nav section titled ``section`` (made at the end if missing)."""
    nav = config.nav if config.nav is not None else []
    for item in nav:
        if isinstance(item, dict) and section in item:
            item[section] = [*(item[section] or []), *entries]
            break
    else:
        nav.append({section: list(entries)})
    config.nav = nav


def _add_tutorial(files: Files, config: MkDocsConfig, script: str, notebook: Path) -> None:
    """Add one tutorial page and its images, from its executed notebook."""
    assert STATE.links is not None
    page = STATE.links.pages[script]
    content = nbformat.read(notebook, as_version=4)
    script_file = STATE.links.root / script
    if script_file.is_file() and stale(content, script_file):
        LOG.warning(f"{notebook} holds other code than {script}: {MAKE_NOTEBOOKS}")
    converted = notebook_page(content, page=page, source=script, links=STATE.links)
    for problem in converted.problems:
        LOG.warning(f"{notebook}: {problem}: fix the tutorial, then {MAKE_NOTEBOOKS}")
    _generate(files, config, page, converted.markdown)
    for uri, image in converted.files.items():
        _generate(files, config, uri, image)
    STATE.html[page] = converted.html


def _add_reference(files: Files, config: MkDocsConfig, settings: Settings) -> list[Any]:
    """Check the docstrings, add one reference page per public module; their nav entries."""
    package = load_package(settings)
    for problem in undocumented(package):
        LOG.warning(f"{problem} (every public name needs one)")
    modules = public_modules(package)
    homes = home_paths(modules)
    nav = []
    for module in modules:
        uri = reference_uri(module, package)
        _generate(files, config, uri, reference_page(module, package, homes))
        nav.append({module.path if module is package else module.name: uri})
    return nav


def _link_map(
    files: Files, config: MkDocsConfig, settings: Settings, pages: dict[str, str]
) -> LinkMap:
    """What is on the site: the docs files, and the generated pages by repository path."""
    folders = {}
    if files.get_file_from_path(settings.tutorials_page) is not None:
        folders[settings.tutorials] = settings.tutorials_page
    return LinkMap(
        root=settings.root,
        docs=Path(config.docs_dir).resolve().relative_to(settings.root).as_posix(),
        pages={settings.readme: "index.md", **pages},
        folders=folders,
        generated=frozenset(["index.md", *pages.values()]),
    )


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Start a build: fresh state, and the site's own stylesheet."""
    global STATE
    STATE = BuildState()
    if SITE_CSS not in config.extra_css:
        config.extra_css.append(SITE_CSS)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Generate the home page, tutorial pages and reference pages; extend the nav."""
    from pygments.formatters import HtmlFormatter

    settings = Settings.from_config(config)
    notebooks = tutorial_sources(settings)
    pages = {f"{settings.tutorials}/{stem}.py": f"tutorials/{stem}.md" for stem in notebooks}
    STATE.links = _link_map(files, config, settings, pages)
    STATE.generated.update(STATE.links.generated)
    readme = (settings.root / settings.readme).read_text(encoding="utf-8")
    home = rewrite_links(readme, source=settings.readme, page="index.md", links=STATE.links)
    _generate(files, config, "index.md", home)
    for stem, notebook in notebooks.items():
        _add_tutorial(files, config, f"{settings.tutorials}/{stem}.py", notebook)
    css = HtmlFormatter().get_style_defs(".highlight") + SITE_RULES
    _generate(files, config, SITE_CSS, css)
    _add_to_nav(config, settings.tutorial_section, sorted(pages.values()))
    _add_to_nav(config, settings.reference_section, _add_reference(files, config, settings))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """The docs pages' links to repository files rewritten, Sphinx roles as plain code.

    (Generated pages are written that way already.)
    """
    uri = page.file.src_uri
    if uri in STATE.generated or STATE.links is None or uri.startswith("reference/"):
        return markdown
    source = f"{STATE.links.docs}/{uri}"
    return strip_roles(rewrite_links(markdown, source=source, page=uri, links=STATE.links))


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Put each notebook's raw HTML outputs back where their placeholders are."""
    for placeholder, raw in STATE.html.get(page.file.src_uri, {}).items():
        if html.count(placeholder) != 1:
            LOG.warning(f"{page.file.src_uri}: an HTML output's placeholder was not kept")
            continue
        html = html.replace(placeholder, f'<div class="osl-output">{raw}</div>')
    return html
