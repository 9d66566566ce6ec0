"""The command line's failure modes: strict JSON out, bad --out / --device caught before a
model loads, and API ValueErrors as exit-2 messages instead of tracebacks."""

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from oversquash_lens import _cli
from oversquash_lens._adapter import ModelAdapter
from oversquash_lens._cli import main
from oversquash_lens._errors import MissingHookError, UnsupportedModelError
from oversquash_lens.reporting._report import ReportRun, Section, write_summary

from .conftest import BACKENDS

OUT_COMMANDS = {
    "trace": ["--task", "count_ones", "--n", "16"],
    "paths": ["--n", "16"],
    "sensitivity": ["--n", "16"],
    "collapse": ["--lengths", "1,2"],
    "behaviour": ["--lengths", "1", "--samples", "1"],
    "report": ["--quick"],
}


class ModelLoaded(Exception):
    """Raised by the patched load_model: the check came too late."""


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ModelLoaded("a model was loaded before the arguments were checked")

    monkeypatch.setattr(_cli, "load_model", refuse)  # the CLI's own binding


def strict_loads(text: str) -> Any:
    """json.loads that rejects NaN, Infinity and -Infinity, as JSON.parse does."""

    def reject(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=reject)


# ---------------------------------------------------------------- strict JSON
def test_strict_json_nulls_every_non_finite_float() -> None:
    from oversquash_lens._json import dumps, strict_json

    value = {
        "nan": float("nan"),
        "rows": [{"inf": float("inf")}, (np.float32(-np.inf), np.float64(0.5))],
        "array0d": np.array(np.nan),
        "tensor0d": torch.tensor(float("nan")),
        "kept": [1, True, "NaN", None, 2.5],
    }
    assert strict_json(value) == {
        "nan": None,
        "rows": [{"inf": None}, [None, 0.5]],
        "array0d": None,
        "tensor0d": None,
        "kept": [1, True, "NaN", None, 2.5],
    }
    assert math.isnan(value["nan"])  # a copy: the input is untouched
    assert strict_loads(dumps(value, default=str))["rows"][1] == [None, 0.5]


def test_behaviour_json_is_strict(capsys: pytest.CaptureFixture[str]) -> None:
    """One new token: tiny-gpt2 answers no number, so abs_error is NaN in the rows."""
    argv = ["behaviour", "--model", "tiny-gpt2", "--backend", BACKENDS[0], "--json"]
    options = ["--task", "count_ones", "--lengths", "1,2", "--samples", "1"]
    assert main([*argv, *options, "--max-new-tokens", "1"]) == 0
    payload = strict_loads(capsys.readouterr().out)
    assert any(row["abs_error"] is None for row in payload["rows"])  # was NaN
    assert any(row["mean_abs_error"] is None for row in payload["accuracy"])


def test_summary_json_is_strict(tmp_path: Path, load: Callable[..., Any]) -> None:
    adapter = ModelAdapter(load("tiny-gpt2", BACKENDS[0]))
    plan = SimpleNamespace(name="smoke", quick=True)
    accuracy = [{"k": 1, "accuracy": 0.0, "mean_abs_error": float("nan")}]
    section = Section("behaviour_count_ones", "Counting", summary={"accuracy": accuracy})
    section.summary["slope"] = np.float32(np.inf)
    run = ReportRun(
        None, adapter, adapter.provenance(), plan, tmp_path, ("png",), 0.5, time.perf_counter()
    )
    write_summary(run, [section])
    summary = strict_loads((tmp_path / "summary.json").read_text())
    step = summary["steps"]["behaviour_count_ones"]
    assert step["accuracy"][0]["mean_abs_error"] is None and step["slope"] is None
    assert step["accuracy"][0]["accuracy"] == 0.0 and summary["seconds"]["load"] == 0.5
    assert summary["provenance"]["model_name"] == "tiny-gpt2"


# ---------------------------------------------------------------- --out
@pytest.mark.parametrize("command", list(OUT_COMMANDS))
@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
def test_out_that_is_a_file_fails_before_loading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_loading: None, command: str, under: bool
) -> None:
    file = tmp_path / "results.txt"
    file.write_text("not a folder")
    out = file / "run" if under else file
    argv = [command, "--model", "tiny-gpt2", *OUT_COMMANDS[command], "--out", str(out)]
    started = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - started < 5
    captured = capsys.readouterr()
    advice = "give a path inside a folder" if under else "--out must be a folder"
    assert f"oversquash-lens {command}: error: --out" in captured.err and advice in captured.err
    assert captured.out == ""
    assert file.read_text() == "not a folder"


# ---------------------------------------------------------------- --device
@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with one CUDA device and no MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize(
    "device, message",
    [
        ("cuda:7", "only 1 cuda device is visible; choose one of cpu, cuda:0"),
        ("nonsense", "is not a torch device: use cpu, cuda, cuda:N or mps"),
        ("mps", "no mps device is available on this machine"),
        ("meta", "cannot run on meta devices"),
    ],
)
@pytest.mark.parametrize("command", ["paths", "demo", "report"])
def test_missing_devices_fail_before_loading(
    capsys: pytest.CaptureFixture[str],
    no_loading: None,
    one_gpu: None,
    command: str,
    device: str,
    message: str,
) -> None:
    assert main([command, "--model", "tiny-gpt2", "--device", device]) == 2
    err = capsys.readouterr().err
    assert f"oversquash-lens {command}: error: --device {device!r}" in err and message in err


def test_cuda_without_a_gpu_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_loading: None
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["sensitivity", "--model", "tiny-gpt2", "--device", "cuda"]) == 2
    assert "no cuda device is available on this machine" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cpu", "cpu:0", "cuda", "cuda:0"])
def test_devices_that_exist_pass_the_check(no_loading: None, one_gpu: None, device: str) -> None:
    with pytest.raises(ModelLoaded):  # checked, then on to loading the model
        main(["paths", "--model", "tiny-gpt2", "--device", device])


# ---------------------------------------------------------------- API errors
@pytest.mark.parametrize(
    "argv, message",
    [
        (["sensitivity", "--layers", "99"], "layer 99 does not exist: the model has 2 blocks"),
        (["trace", "--layers", "0,-5"], "does not exist"),
        (["sensitivity", "--probes", "1"], "probes must be at least 2"),
    ],
)
def test_api_value_errors_exit_2_without_a_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    command = argv[0]
    assert main([*argv, "--model", "tiny-gpt2", "--backend", BACKENDS[0], "--n", "16"]) == 2
    captured = capsys.readouterr()
    assert f"oversquash-lens {command}: error: " in captured.err and message in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(
    "error, code",
    [
        (ValueError("bad value: give another"), 2),
        (TypeError("wrong type: give a str"), 2),
        (UnsupportedModelError("not a model: load one"), 2),  # package error on TypeError
        (MissingHookError("no hook: use the bridge"), 1),  # package error, not a usage one
    ],
)
def test_exit_codes_of_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    code: int,
) -> None:
    def command(args: Any) -> int:
        raise error

    monkeypatch.setitem(_cli._COMMANDS, "models", command)
    assert main(["models"]) == code
    assert capsys.readouterr().err == f"oversquash-lens models: error: {error}\n"


def test_unexpected_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def command(args: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setitem(_cli._COMMANDS, "models", command)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])
