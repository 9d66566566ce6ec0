"""Results: save/load round trips, atomic writes, provenance."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import oversquash_lens as osl
from oversquash_lens.results import Provenance, Result


def make_result(load, backend: str):
    model = load("tiny-llama", backend)
    with osl.attach(model, osl.ResidualNorms(include_final_norm=True)) as rec:
        model(model.to_tokens(["1 2 3", "4 5 6"]))
    return rec.result("ResidualNorms")


def test_round_trip(tmp_path: Path, load, backend: str) -> None:
    result = make_result(load, backend)
    path = result.save(tmp_path / "norms")
    assert path.name == "norms.npz"
    again = osl.ResidualNormsResult.load(path)
    assert torch.equal(again.norms, result.norms) and torch.equal(again.tokens, result.tokens)
    assert again.points == result.points and again.position == result.position
    assert again.provenance == result.provenance
    assert Result.load(path).provenance.backend == backend  # base class dispatches by type
    assert again.to_dataframe().equals(result.to_dataframe())


def test_load_refuses_other_types(tmp_path: Path, load, backend: str) -> None:
    @dataclass
    class OtherResult(Result):
        values: torch.Tensor
        provenance: Provenance

    path = OtherResult(torch.zeros(2), make_result(load, backend).provenance).save(tmp_path / "x")
    with pytest.raises(TypeError, match="OtherResult, not a ResidualNormsResult"):
        osl.ResidualNormsResult.load(path)


def test_save_is_atomic(tmp_path: Path, load, backend: str, monkeypatch) -> None:
    result = make_result(load, backend)
    path = result.save(tmp_path / "norms.npz")
    original = path.read_bytes()

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        result.save(path)
    assert path.read_bytes() == original  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["norms.npz"]  # no temp left


def test_saved_file_is_plain_numpy(tmp_path: Path, load, backend: str) -> None:
    path = make_result(load, backend).save(tmp_path / "r")
    with np.load(path, allow_pickle=False) as data:  # readable without this package
        assert data["norms"].shape == (2, 4)
        assert '"type": "ResidualNormsResult"' in str(data["__meta__"])


def test_shape_validation(load, backend: str) -> None:
    result = make_result(load, backend)
    with pytest.raises(ValueError, match="norms must be"):
        osl.ResidualNormsResult(
            norms=torch.zeros(2, 3, dtype=torch.float64),
            points=result.points,
            position=-1,
            tokens=None,
            provenance=result.provenance,
        )


def test_atomic_write_uses_the_umask(tmp_path: Path) -> None:
    import os

    from oversquash_lens.results._base import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
