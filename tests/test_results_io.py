"""Result files: numpy-less dtypes, unreadable files, stale temporary files."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import oversquash_lens as osl
from oversquash_lens._errors import ResultFileError
from oversquash_lens.results import Result
from oversquash_lens.results._atomic import _temp_prefix, atomic_write_bytes
from oversquash_lens.results._base import FORMAT_VERSION
from tests.conftest import BACKENDS


@dataclass
class IoSample(Result):
    """A small hand-built result: no model needed."""

    values: torch.Tensor
    labels: tuple[str, ...]
    note: str


@dataclass
class BitsSample(Result):
    """Every dtype numpy lacks that a model can run in or be rounded to."""

    bf16_all: torch.Tensor
    bf16_scalar: torch.Tensor
    bf16_strided: torch.Tensor
    e4m3_all: torch.Tensor
    e5m2_all: torch.Tensor
    plain: torch.Tensor


def sample(tmp_path: Path) -> Path:
    return IoSample(torch.arange(6.0).reshape(2, 3), ("a", "b"), "n").save(tmp_path / "s")


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns, so NaNs and signed zeros compare exactly."""
    return tensor.view({1: torch.uint8, 2: torch.int16}[tensor.element_size()])


def rewrite(path: Path, edit_meta: Any = None, **extra: np.ndarray) -> Path:
    """A copy of a saved result with its ``__meta__`` edited and arrays added."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    if edit_meta is not None:
        arrays["__meta__"] = np.array(edit_meta(json.loads(str(arrays["__meta__"]))))
    arrays.update(extra)
    out = path.with_name("edited.npz")
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out


def with_header(**changes: Any) -> Any:
    """A ``rewrite`` edit that updates the header's top-level keys (None deletes one)."""

    def edit(header: dict[str, Any]) -> str:
        for key, value in changes.items():
            if value is None:
                del header[key]
            else:
                header[key] = value
        return json.dumps(header)

    return edit


# ---------------------------------------------------------------------- dtypes
def test_bfloat16_representations_round_trip(tmp_path: Path, load) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    with osl.native_dtype(model, "bfloat16"), osl.attach(model, osl.CollapseProbe()) as rec:
        model(model.to_tokens(["1 2 3", "4 5 6"]))
    reps = rec.result("CollapseProbe")
    assert isinstance(reps, osl.Representations)
    assert reps.heads.dtype == reps.logits.dtype == torch.bfloat16  # kept in the model's dtype
    again = osl.Representations.load(reps.save(tmp_path / "reps"))
    for name in ("residual", "heads", "logits", "tokens"):
        saved, loaded = getattr(reps, name), getattr(again, name)
        assert loaded.dtype == saved.dtype and torch.equal(loaded, saved), name
    assert again.positions == reps.positions and again.points == reps.points
    assert again.provenance == reps.provenance


def test_every_bfloat16_and_float8_bit_pattern_round_trips(tmp_path: Path) -> None:
    every16 = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    every8 = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    result = BitsSample(
        bf16_all=every16.view(torch.bfloat16).reshape(256, 256),  # NaN payloads, -0, inf
        bf16_scalar=torch.tensor(-1.5, dtype=torch.bfloat16),
        bf16_strided=torch.randn(4, 6).bfloat16().t()[::2],
        e4m3_all=every8.view(torch.float8_e4m3fn),
        e5m2_all=every8.view(torch.float8_e5m2),
        plain=torch.randn(3, dtype=torch.float64),
    )
    path = result.save(tmp_path / "bits")
    again = BitsSample.load(path)
    for name in ("bf16_all", "bf16_scalar", "bf16_strided", "e4m3_all", "e5m2_all"):
        saved, loaded = getattr(result, name), getattr(again, name)
        assert loaded.dtype == saved.dtype and loaded.shape == saved.shape, name
        assert torch.equal(bits(loaded), bits(saved.contiguous())), name
    assert torch.equal(again.plain, result.plain)
    with np.load(path, allow_pickle=False) as data:  # plain numpy sees the raw bits
        assert data["bf16_all"].dtype == np.uint16 and data["e4m3_all"].dtype == np.uint8
        assert json.loads(str(data["__meta__"]))["raw_bits"]["e5m2_all"] == "float8_e5m2"


def test_version_1_files_still_load(tmp_path: Path) -> None:
    path = rewrite(sample(tmp_path), with_header(format_version=1))
    again = IoSample.load(path)
    assert torch.equal(again.values, torch.arange(6.0).reshape(2, 3))
    assert again.labels == ("a", "b") and again.note == "n"


def test_raw_bits_of_an_unknown_dtype_are_refused(tmp_path: Path) -> None:
    path = rewrite(sample(tmp_path), with_header(raw_bits={"values": "float99"}))
    with pytest.raises(ResultFileError, match="float99.*upgrade torch"):
        IoSample.load(path)


# ---------------------------------------------------------------------- unreadable files
def _random_bytes(path: Path) -> Path:
    out = path.with_name("random.npz")
    out.write_bytes(np.random.default_rng(0).bytes(4096))
    return out


def _truncated(path: Path) -> Path:
    out = path.with_name("half.npz")
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


def _plain_numpy(path: Path) -> Path:
    out = path.with_name("plain.npz")
    np.savez(out, values=np.zeros(3))
    return out


def _single_array(path: Path) -> Path:
    out = path.with_name("array.npy")
    np.save(out, np.zeros(3))
    return out


def _folder(path: Path) -> Path:
    out = path.with_name("folder.npz")
    out.mkdir()
    return out


UNREADABLE = {
    "random bytes": (_random_bytes, "not an .npz"),
    "truncated": (_truncated, "truncated or corrupt"),
    "plain numpy.savez": (_plain_numpy, "no __meta__ entry"),
    "a .npy file": (_single_array, "not an .npz"),
    "a folder": (_folder, "is a folder"),
    "meta not JSON": (lambda p: rewrite(p, lambda h: "{not json"), "not valid JSON"),
    "meta a JSON list": (lambda p: rewrite(p, lambda h: "[1, 2]"), "not a JSON object"),
    "meta not a string": (
        lambda p: rewrite(p, None, __meta__=np.zeros(2)),
        "not valid JSON|not a JSON object",
    ),
    "no type": (lambda p: rewrite(p, with_header(type=None)), "names no result type"),
    "no fields": (lambda p: rewrite(p, with_header(fields=None)), "has no fields"),
    "no format_version": (
        lambda p: rewrite(p, with_header(format_version=None)),
        "no format_version",
    ),
    "bad format_version": (
        lambda p: rewrite(p, with_header(format_version="1")),
        "not a version number",
    ),
    "newer format_version": (
        lambda p: rewrite(p, with_header(format_version=FORMAT_VERSION + 1)),
        "written by a newer oversquash-lens.*upgrade",
    ),
    "unknown field": (
        lambda p: rewrite(p, None, extra=np.zeros(1)),
        r"unknown fields \['extra'\]",
    ),
    "missing field": (
        lambda p: rewrite(p, with_header(fields={"labels": ["a"]})),
        r"missing fields \['note'\]",
    ),
    "field stored twice": (
        lambda p: rewrite(p, with_header(fields={"labels": [], "note": "", "values": 1})),
        r"stored twice \['values'\]",
    ),
    "failed checks": (
        lambda p: rewrite(p, None, values=np.array(["text"])),
        "fail IoSample's checks",
    ),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_files_raise_a_clear_error(tmp_path: Path, case: str) -> None:
    make, reason = UNREADABLE[case]
    path = make(sample(tmp_path))
    with pytest.raises(ResultFileError, match=reason) as info:
        IoSample.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "re-run the analysis and save it again" in message or "upgrade" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, osl.OversquashLensError)


def test_pickled_objects_are_refused_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "the-pickle-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(marker),))

    path = rewrite(sample(tmp_path), None, values=np.array([Payload()], dtype=object))
    with pytest.raises(ResultFileError, match="pickled Python objects, which are never loaded"):
        IoSample.load(path)
    assert not marker.exists()
    with np.load(path, allow_pickle=True) as data:  # the payload is live: unpickling runs it
        data["values"]
    assert marker.exists()


def test_a_missing_file_names_its_path(tmp_path: Path) -> None:
    sample(tmp_path)  # s.npz
    with pytest.raises(FileNotFoundError, match=r"no result file at .*s; did you mean s\.npz"):
        IoSample.load(tmp_path / "s")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing.npz")):
        IoSample.load(tmp_path / "nothing.npz")


def test_other_and_unknown_types_stay_type_errors(tmp_path: Path) -> None:
    path = sample(tmp_path)
    with pytest.raises(TypeError, match="IoSample, not a BitsSample; load it with IoSample"):
        BitsSample.load(path)
    unknown = rewrite(path, with_header(type="NoSuchResult"))
    with pytest.raises(TypeError, match="NoSuchResult, not a Result; no result class"):
        Result.load(unknown)


# ---------------------------------------------------------------------- stale temp files
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_save_removes_stale_temps_and_keeps_live_ones(tmp_path: Path, monkeypatch) -> None:
    target, two_hours_ago = tmp_path / "s.npz", time.time() - 7200
    dead = dead_pid()
    names = {
        "dead": _temp_prefix(target, dead) + "abcd1234.tmp",
        "legacy old": ".s.npz.efgh5678.tmp",
        "legacy new": ".s.npz.ijkl9012.tmp",
        "live": _temp_prefix(target) + "mnop3456.tmp",
        "other user": _temp_prefix(target, 1) + "qrst7890.tmp",  # PermissionError: alive
        "other host": f".s.npz.{dead}-host0000.uvwx1234.tmp",
        "other target": _temp_prefix(tmp_path / "t.npz", dead) + "yzab5678.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    os.utime(tmp_path / names["legacy old"], (two_hours_ago, two_hours_ago))
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid == 1:
            raise PermissionError(1, "Operation not permitted")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    sample(tmp_path)
    left = {p.name for p in tmp_path.iterdir()}
    assert names["dead"] not in left and names["legacy old"] not in left
    keep = ("legacy new", "live", "other user", "other host", "other target")
    assert left == {"s.npz"} | {names[k] for k in keep}


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from oversquash_lens.results._base import atomic_write_bytes

def hang(fd):
    print("writing", flush=True)
    time.sleep(60)

os.fsync = hang
atomic_write_bytes(Path(sys.argv[1]), b"x" * 20_000_000)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_save_leaves_a_temp_the_next_save_removes(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    atomic_write_bytes(target, b"old")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-c", KILLED_WRITER, str(target)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=env) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == b"writing\n"
        finally:
            writer.send_signal(signal.SIGKILL)
    temps = [p.name for p in tmp_path.iterdir() if p.name != "big.bin"]
    assert len(temps) == 1 and temps[0].startswith(f".big.bin.{writer.pid}-")
    assert target.read_bytes() == b"old"  # the killed save never touched the target
    atomic_write_bytes(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]
    assert target.read_bytes() == b"new"
