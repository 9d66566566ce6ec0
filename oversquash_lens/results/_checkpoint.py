"""The one checkpoint mechanism of every resumable sweep: data only, keyed, atomic.

A checkpoint is one ``.npz`` file: named entries of arrays, plus a JSON header
(``__checkpoint__``) holding the sweep's name, its *key* and each entry's JSON metadata.
The key is everything that changes the numbers — the model's fingerprint (a hash of
its weights, dtype, weight processing, backend, active precision, package version) and
the sweep's own arguments — so a file written for another model or another sweep is
refused instead of silently mixed in. Nothing is ever unpickled: a hostile file cannot
run code, and a corrupt or truncated one is a clear :class:`CheckpointError`.
"""

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._errors import CheckpointError, CheckpointMismatchError
from ._base import atomic_write_bytes

CHECKPOINT_FORMAT = 1
_HEADER = "__checkpoint__"
_KIND = "oversquash_lens checkpoint"
_SEP = "::"  # entry name / array name inside the npz


class Checkpoint:
    """Progress of one sweep: entries of (JSON metadata, tensors), saved atomically.

    Args:
        path: The file (written exactly there, whatever its suffix).
        sweep: The sweep's name (``"collapse"``, ``"behaviour"``).
        key: JSON-able description of everything that changes the numbers.

    Example:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/sweep.ckpt"
        >>> ckpt = Checkpoint.open(path, "demo", {"model": "m", "lengths": [1, 2]})
        >>> ckpt.put("1", {"points": ["y"]}, {"d": torch.ones(2)})
        >>> ckpt.save()
        >>> Checkpoint.open(path, "demo", {"model": "m", "lengths": [1, 2]}).get("1")[1]["d"]
        tensor([1., 1.])
    """

    def __init__(self, path: str | Path, sweep: str, key: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.sweep = sweep
        self.key = _plain(dict(key))
        self._meta: dict[str, Any] = {}
        self._arrays: dict[str, dict[str, Tensor]] = {}

    @classmethod
    def open(cls, path: str | Path, sweep: str, key: Mapping[str, Any]) -> "Checkpoint":
        """The checkpoint at ``path``: its saved entries, or empty if there is no file.

        Raises:
            CheckpointError: If the file is corrupt, truncated or not a checkpoint.
            CheckpointMismatchError: If it was written for another model or sweep.
        """
        ckpt = cls(path, sweep, key)
        if ckpt.path.is_dir():
            raise CheckpointError(f"checkpoint path {ckpt.path} is a folder; give a file path")
        if ckpt.path.exists():
            ckpt._read()
        return ckpt

    @classmethod
    def read(cls, path: str | Path) -> "Checkpoint":
        """A checkpoint file as it is, whatever sweep and key it was written for.

        For tools that combine checkpoints (merging shards): compare ``sweep`` and ``key``
        yourself before using the entries.

        Raises:
            CheckpointError: If the file is missing, corrupt, truncated or not a checkpoint.
        """
        target = Path(path)
        if not target.is_file():
            raise CheckpointError(f"checkpoint {target} does not exist or is not a file")
        header, _ = _read_file(target)
        ckpt = cls(target, str(header.get("sweep")), header.get("key") or {})
        ckpt._read()
        return ckpt

    # ------------------------------------------------------------------ entries
    def __contains__(self, name: object) -> bool:
        return name in self._meta

    def __len__(self) -> int:
        return len(self._meta)

    def names(self) -> list[str]:
        """Entry names, in the order they were put."""
        return list(self._meta)

    def get(self, name: str) -> tuple[Any, dict[str, Tensor]] | None:
        """``(metadata, tensors)`` of one entry, or None if it is not there."""
        if name not in self._meta:
            return None
        return self._meta[name], dict(self._arrays.get(name, {}))

    def put(self, name: str, meta: Any, arrays: Mapping[str, Tensor] | None = None) -> None:
        """Add or replace one entry (JSON-able metadata, CPU tensors of numpy dtypes)."""
        if _SEP in name:
            raise ValueError(f"entry names cannot contain {_SEP!r}, got {name!r}")
        self._meta[name] = _plain(meta)
        self._arrays[name] = {k: v.detach().cpu() for k, v in (arrays or {}).items()}

    # ------------------------------------------------------------------ files
    def save(self) -> None:
        """Write every entry to :attr:`path`, atomically (a crash never leaves half a file)."""
        header = {
            "kind": _KIND,
            "format_version": CHECKPOINT_FORMAT,
            "sweep": self.sweep,
            "key": self.key,
            "entries": self._meta,
        }
        arrays: dict[str, np.ndarray] = {_HEADER: np.array(json.dumps(header, allow_nan=False))}
        for name, tensors in self._arrays.items():
            for array_name, tensor in tensors.items():
                arrays[f"{name}{_SEP}{array_name}"] = tensor.numpy()
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(self.path, buffer.getvalue())

    def _read(self) -> None:
        header, arrays = _read_file(self.path)
        if header.get("sweep") != self.sweep:
            raise CheckpointMismatchError(
                f"checkpoint {self.path} belongs to a {header.get('sweep')!r} sweep, not "
                f"{self.sweep!r}; delete it or pass another checkpoint path"
            )
        saved = header.get("key")
        if saved != self.key:
            raise CheckpointMismatchError(
                f"checkpoint {self.path} was written for another model or sweep (it differs "
                f"in {describe_difference(saved, self.key)}); its numbers cannot be reused. "
                "Delete it to start over, or pass another checkpoint path"
            )
        entries = header.get("entries")
        if not isinstance(entries, dict):
            raise _corrupt(self.path, "its header has no entries")
        self._meta = dict(entries)
        for full, value in arrays.items():
            name, _, array_name = full.partition(_SEP)
            if name not in self._meta:
                raise _corrupt(self.path, f"array {full!r} belongs to no entry")
            self._arrays.setdefault(name, {})[array_name] = torch.from_numpy(value)


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a checkpoint file; every failure a CheckpointError."""
    try:
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            if _HEADER not in data.files:
                raise CheckpointError(
                    f"{path} is not an oversquash_lens checkpoint (no header; an older "
                    "format or another file): delete it to start over, or pass another path"
                )
            header = json.loads(str(data[_HEADER]))
            arrays = {k: np.array(data[k]) for k in data.files if k != _HEADER}
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict) or header.get("kind") != _KIND:
        raise _corrupt(path, "its header is not a checkpoint header")
    version = header.get("format_version")
    if version != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this oversquash_lens reads "
            f"version {CHECKPOINT_FORMAT}: delete it to start over, or pass another path"
        )
    return header, arrays


def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is corrupt or truncated ({why}); delete it to start the sweep "
        "over, or pass another checkpoint path"
    )


def _plain(value: Any) -> Any:
    """JSON round trip: tuples become lists, so saved and fresh keys compare equal."""
    return json.loads(json.dumps(value, allow_nan=False))


def describe_difference(saved: Any, current: Any) -> str:
    """Which fields of two keys differ (nested fields dotted), for an error message.

    Example:
        >>> describe_difference({"a": 1, "m": {"dtype": "float32"}},
        ...                     {"a": 1, "m": {"dtype": "bfloat16"}, "c": 0})
        'c (saved None, now 0), m.dtype (saved float32, now bfloat16)'
    """
    old, new = _flat(saved), _flat(current)
    parts = [
        f"{name} (saved {_short(old.get(name))}, now {_short(new.get(name))})"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]
    return ", ".join(parts) or "its key"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix or "key": value}
    out: dict[str, Any] = {}
    for name, item in value.items():
        out.update(
            _flat(item, f"{prefix}{name}.") if isinstance(item, dict) else {f"{prefix}{name}": item}
        )
    return out


def _short(value: Any, n: int = 24) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[: n - 1] + "…"
