"""Every code block of the README and the docs runs, so no example can rot.

The Python blocks of each Markdown file run in order in one namespace (later blocks use
the names earlier ones define), in a temporary working folder. SmolLM2-135M is replaced
by the tiny Llama (``"smollm2-135m"`` → ``"tiny-llama"``) so that the whole README runs
in seconds; every other line runs as written. A block that imports ``HookedTransformer``
runs only where the installed TransformerLens has it (3.x; CI runs the suite on 3.9 too).

Shell blocks: every ``oversquash-lens`` line must parse with the command's own parser
(``models`` and ``demo --model tiny-llama`` really run), and every ``make`` target named
must exist in the Makefile.
"""

import re
import shlex
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from oversquash_lens._cli import main
from oversquash_lens._cli_args import build_parser
from oversquash_lens._compat import hooked_transformer_class

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SUBSTITUTIONS = {'"smollm2-135m"': '"tiny-llama"'}
NEEDS_HOOKED = "import HookedTransformer"


def blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced block in ``language``."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) == language
    ]


def with_python_blocks() -> list[Path]:
    return [path for path in DOCS if blocks(path, "python")]


def test_the_docs_have_examples() -> None:
    # guards the extraction itself: a broken pattern would find nothing and pass
    readme = blocks(ROOT / "README.md", "python")
    assert len(readme) >= 8 and any("osl.attach(" in code for _, code in readme)
    assert blocks(ROOT / "README.md", "bash")


@pytest.mark.parametrize("path", with_python_blocks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: Any) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    ran = 0
    for line, code in blocks(path, "python"):
        if NEEDS_HOOKED in code and hooked_transformer_class() is None:
            continue  # TransformerLens 4 has no HookedTransformer; the 3.9 suite runs it
        for old, new in SUBSTITUTIONS.items():
            code = code.replace(old, new)
        try:
            with warnings.catch_warnings():
                # TransformerLens 3.9 deprecates HookedTransformer on construction; a user
                # sees that warning, the suite (warnings as errors) must not fail on it
                warnings.filterwarnings("ignore", "HookedTransformer is deprecated")
                exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{path.name}, the block at line {line} failed: {exc!r}") from exc
        finally:
            plt.close("all")
        ran += 1
    assert ran >= 1


def test_readme_attach_example_gives_usable_results(tmp_path: Path, monkeypatch: Any) -> None:
    """The README's attach block, run with gradients, then read as a user would."""
    import oversquash_lens as osl

    monkeypatch.chdir(tmp_path)
    model = osl.load_model("tiny-llama")
    tokens = model.to_tokens("How many ones? 1 1 1 1 1 1 1 1")
    with osl.attach(model, osl.AttentionPaths(), osl.Sensitivity()) as rec:
        model(tokens)  # with gradients, as the README says
    for name in ("AttentionPaths", "Sensitivity"):
        result = rec.results[name][0]
        assert len(result.to_dataframe()) > 0
        result.plot()
        for value in vars(result).values():
            if hasattr(value, "requires_grad"):
                assert not value.requires_grad and value.device.type == "cpu"


def shell_lines(path: Path) -> list[tuple[int, str]]:
    lines = []
    for start, code in blocks(path, "bash"):
        for offset, raw in enumerate(code.splitlines()):
            text = raw.split(" #")[0].strip()
            if text:
                lines.append((start + offset, text))
    return lines


def shell_commands() -> list[tuple[str, int, str]]:
    return [(path.name, line, text) for path in DOCS for line, text in shell_lines(path) if text]


@pytest.mark.parametrize(("name", "line", "text"), shell_commands(), ids=lambda v: str(v))
def test_shell_lines_are_real(
    name: str, line: int, text: str, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    argv = shlex.split(text)
    if argv[0] == "make":
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        for target in argv[1:]:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), (name, line)
    elif argv[0] == "oversquash-lens":
        args = build_parser().parse_args(argv[1:])  # exits (fails the test) on a bad flag
        if args.command == "models" or (args.command == "demo" and args.model == "tiny-llama"):
            monkeypatch.chdir(tmp_path)
            assert main(argv[1:]) == 0, f"{name}:{line}: {text}"
    else:
        assert argv[0] == "pip", f"{name}:{line}: no check for {text!r}"


def test_results_page_is_current() -> None:
    import oversquash_lens
    from oversquash_lens.results._base import public_result_classes
    from oversquash_lens.results._describe import fields_markdown

    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert page == fields_markdown(public_result_classes(oversquash_lens)), (
        "docs/results.md is stale: run scripts/results_page.py > docs/results.md"
    )
