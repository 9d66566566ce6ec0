"""benchmarks/gpu.py runs end to end on the CPU with --tiny (its GPU run uses the same code)."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = {"collapse", "paths", "hutchinson", "hutchinson_frozen", "trace"}


def test_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,  # ~10 s on an idle 2-core CPU
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    numbers = json.loads(out.read_text())
    assert numbers["dtype"] == "bfloat16" and numbers["device"] == "cpu"
    (size,) = numbers["sizes"].values()
    assert set(size["steps"]) == STEPS
    for name, step in size["steps"].items():
        assert not step["ours"]["oom"] and not step["plain"]["oom"], name
        assert step["ours"]["seconds"] > 0 and step["plain"]["seconds"] > 0, name
        assert math.isclose(step["time_ratio"], step["ours"]["seconds"] / step["plain"]["seconds"])
    assert numbers["worst_time_ratio"] == max(s["time_ratio"] for s in size["steps"].values())


def test_gpu_benchmark_says_when_there_is_no_gpu() -> None:
    import pytest
    import torch

    if torch.cuda.is_available():  # pragma: no cover - only on a GPU machine
        pytest.skip("a GPU is present: the script would run for minutes")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--sizes", "1.1b"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "no CUDA device" in done.stderr
