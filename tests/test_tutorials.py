"""The tutorials run end to end in fast mode on a tiny model and write their figures."""

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Every file each tutorial must write (PNG figures are checked for their signature).
EXPECTED = {
    "01_quickstart.py": [
        "residual_norms.png",
        "trace_profile.png",
        "flow_tokens.html",
        "attention_heads.html",
        "residual_norms.npz",
    ],
    "02_representational_collapse.py": ["synthetic_collapse.png", "fig5.png", "fig5_a.npz"],
    "03_precision.py": ["synthetic_precision.png", "model_precision.png"],
    "04_oversquashing.py": [
        "path_counts.png",
        "depth_limit_uniform.png",
        "rollout_depth.png",
        "flow.png",
        "flow.npz",
    ],
    "05_counting_and_copying.py": [
        "lm_behaviour.png",
        "toy_behaviour.png",
        "glasses.png",
        "lm_copy_last.npz",
        "glasses.npz",
    ],
}


def test_every_tutorial_is_listed() -> None:
    found = {p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py")}
    assert found == set(EXPECTED), f"tutorials without a test entry: {found ^ set(EXPECTED)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_is_a_percent_notebook(name: str) -> None:
    text = (TUTORIALS / name).read_text()
    cells = [line for line in text.splitlines() if line.startswith("# %%")]
    assert cells[0] == "# %% [markdown]", "the first cell explains what the tutorial measures"
    assert sum(c == "# %%" for c in cells) >= 2
    assert sum(c == "# %% [markdown]" for c in cells) >= 2


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs_fast(name: str, tmp_path: Path) -> None:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    command = [sys.executable, str(TUTORIALS / name), "--fast", "--model", "tiny-llama"]
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # ~10-30 s on an idle 2-core CPU; generous for a loaded CI machine
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, f"{name} failed after {seconds:.0f} s:\n{done.stderr[-4000:]}"
    assert "done in" in done.stdout, "the tutorial stopped before its last cell"
    for filename in EXPECTED[name]:
        path = tmp_path / filename
        assert path.is_file(), f"{name} did not write {filename}; wrote {os.listdir(tmp_path)}"
        data = path.read_bytes()
        assert len(data) > 1000, f"{filename} is only {len(data)} bytes"
        if filename.endswith(".png"):
            assert data.startswith(PNG_MAGIC), f"{filename} is not a PNG"


def _common_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.syspath_prepend(str(TUTORIALS))
    import _common  # pyright: ignore[reportMissingImports]

    return _common


def test_options_ignore_unknown_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    common = _common_module(monkeypatch)
    argv = ["x.py", "--fast", "-f", "/run/kernel.json", "--out", str(tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", argv)
    opts = common.options("demo")
    assert opts.fast and opts.out == tmp_path / "o" and opts.out.is_dir()
    assert opts.model == "smollm2-135m"


def test_options_in_a_notebook_ignore_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    common = _common_module(monkeypatch)
    monkeypatch.setattr(common, "in_notebook", lambda: True)
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/run/kernel.json", "--fast"])
    monkeypatch.chdir(tmp_path)
    opts = common.options("demo", default_model="tiny-llama")
    assert not opts.fast and opts.model == "tiny-llama"
    assert opts.out == Path("tutorial_out") / "demo" and (tmp_path / opts.out).is_dir()


def test_an_imported_ipykernel_is_not_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    # A notebook runner (nbclient) imports ipykernel without running inside a kernel.
    common = _common_module(monkeypatch)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not common.in_notebook()
