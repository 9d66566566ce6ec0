"""The package's layers: no import goes up a layer, no import cycle, the README agrees."""

import ast
import importlib.util
from pathlib import Path

import pytest

import oversquash_lens as osl
from oversquash_lens._layers import DEFERRED_IMPORTS, LAYERS, layer_of

PACKAGE = Path(osl.__file__).resolve().parent
ROOT = PACKAGE.parent


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}


def imports(path: Path, known: set[str], root: Path = ROOT) -> list[tuple[str, int]]:
    """Every package module ``path`` imports, anywhere in the file, with its line."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from x import y` may import the module x.y
                full = f"{target}.{alias.name}"
                found.append((full if full in known else target, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(t, line) for t, line in found if t in known and t != name]


def graph(package: Path = PACKAGE) -> dict[str, list[tuple[str, int]]]:
    found = modules(package)
    return {name: imports(path, set(found), package.parent) for name, path in found.items()}


def upward(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    problems = []
    for source, targets in edges.items():
        for target, line in targets:
            if layer_of(target) > layer_of(source):
                problems.append(
                    f"{source}:{line} imports {target}: layer {LAYERS[layer_of(source)].name} "
                    f"may not import from the higher layer {LAYERS[layer_of(target)].name}"
                )
    return problems


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w, _ in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer() -> None:
    unlisted = []
    for name in modules():
        try:
            layer_of(name)
        except KeyError:
            unlisted.append(name)
    assert unlisted == [], f"add these to oversquash_lens/_layers.py LAYERS: {unlisted}"


def test_no_import_goes_up_a_layer() -> None:
    assert upward(graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    # A fake package with the real layer names: analyzers importing a run-layer module
    # (the cycle this layering removed), which imports the analyzers back.
    fake = tmp_path / "oversquash_lens"
    (fake / "analyzers").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "analyzers" / "__init__.py").write_text("def f():\n    from .._attach import a\n")
    (fake / "_attach.py").write_text("from .analyzers import f\na = 1\n")
    edges = graph(fake)
    assert edges["oversquash_lens.analyzers"] == [("oversquash_lens._attach", 2)]
    assert any("may not import from the higher layer runs" in p for p in upward(edges))
    assert cycles(edges) == [["oversquash_lens._attach", "oversquash_lens.analyzers"]]


def late_imports(package: Path = PACKAGE) -> list[str]:
    """Imports inside functions other than the deferred third-party libraries."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = ["." * node.level + (node.module or "")]
                else:
                    continue
                # a relative name starts with "." and is never in DEFERRED_IMPORTS
                late = [n for n in names if n.split(".")[0] not in DEFERRED_IMPORTS]
                problems += [f"{path.name}:{node.lineno} imports {n} late" for n in late]
    return problems


def test_only_the_documented_libraries_are_imported_inside_functions() -> None:
    assert late_imports() == [], (
        "import it at the top of the module, or add the library to "
        "oversquash_lens._layers.DEFERRED_IMPORTS with the reason"
    )


def test_the_late_import_check_sees_package_and_stdlib_imports(tmp_path: Path) -> None:
    fake = tmp_path / "oversquash_lens"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "def f():\n    from ._x import a\n    import json\n    import pandas\n"
    )
    assert late_imports(fake) == [
        "__init__.py:2 imports ._x late",
        "__init__.py:3 imports json late",
    ]


def test_the_readme_layout_is_the_layer_list() -> None:
    spec = importlib.util.spec_from_file_location("layout", ROOT / "scripts" / "layout.py")
    assert spec is not None and spec.loader is not None
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```text\n{layout.layout_text()}```" in readme, (
        "README.md's layout block is stale: paste the output of scripts/layout.py"
    )


@pytest.mark.parametrize("name", ["attention_paths", "sensitivity"])
def test_moved_functions_keep_their_old_path_for_one_release(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"use oversquash_lens.{name}"):
        old = getattr(osl.analyzers, name)
    assert old is getattr(osl, name)
    with pytest.raises(AttributeError):
        osl.analyzers.no_such_name  # noqa: B018


def test_the_report_function_and_the_reporting_package_do_not_shadow_each_other() -> None:
    import oversquash_lens.reporting as reporting

    assert callable(osl.report) and osl.report is reporting.report
    with pytest.warns(DeprecationWarning, match="use oversquash_lens.reporting.get_suite"):
        from oversquash_lens.report import get_suite  # the subpackage's old name
    assert get_suite is reporting.get_suite
    assert callable(osl.report)  # importing the old path did not rebind osl.report
