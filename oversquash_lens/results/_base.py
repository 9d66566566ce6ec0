"""Result base class: dataclasses of CPU tensors + provenance, saved atomically.

A saved result is one ``.npz`` file: every tensor field as an array, plus a JSON
``__meta__`` entry holding the class name, the other fields and the provenance. Writing
goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a crash never leaves a half-written result.
"""

import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from ._provenance import Provenance

FORMAT_VERSION = 1
_RESULT_TYPES: dict[str, type["Result"]] = {}
R = TypeVar("R", bound="Result")


class Result:
    """Base for every result dataclass.

    Subclasses are dataclasses whose fields are tensors, JSON-compatible values, or a
    :class:`Provenance` named ``provenance``. Tensors are stored detached on the CPU.
    """

    result_type: ClassVar[str] = "Result"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.result_type = cls.__name__
        _RESULT_TYPES[cls.__name__] = cls

    def _fields(self) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(self))  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to ``path`` (``.npz`` appended if missing), atomically.

        Returns:
            The path written.

        Example:
            >>> import tempfile, oversquash_lens as osl
            >>> model = osl.load_model("tiny-gpt2")
            >>> with osl.attach(model, osl.ResidualNorms()) as rec:
            ...     _ = model(model.to_tokens("1 2"))
            >>> path = rec.result("ResidualNorms").save(tempfile.mkdtemp() + "/norms")
            >>> osl.ResidualNormsResult.load(path).norms.shape
            torch.Size([1, 3])
        """
        target = Path(path)
        if target.suffix != ".npz":
            target = target.with_name(target.name + ".npz")
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for fld in self._fields():
            value = getattr(self, fld.name)
            if isinstance(value, torch.Tensor):
                arrays[fld.name] = value.detach().cpu().numpy()
            elif isinstance(value, Provenance):
                meta[fld.name] = {"__provenance__": value.to_dict()}
            else:
                meta[fld.name] = value
        header = {"type": self.result_type, "format_version": FORMAT_VERSION, "fields": meta}
        arrays["__meta__"] = np.array(json.dumps(header, default=_json_default))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(target, buffer.getvalue())
        return target

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str]) -> R:
        """Read a result written by :meth:`save`.

        Raises:
            TypeError: If the file holds a different result type.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            header = json.loads(str(data["__meta__"]))
            arrays = {k: torch.from_numpy(np.array(data[k])) for k in data.files if k != "__meta__"}
        kind = header.get("type")
        result_cls = _RESULT_TYPES.get(kind, None)
        if result_cls is None or not issubclass(result_cls, cls):
            raise TypeError(f"{path} holds a {kind}, not a {cls.__name__}")
        kwargs: dict[str, Any] = dict(arrays)
        for name, value in header["fields"].items():
            if isinstance(value, dict) and "__provenance__" in value:
                kwargs[name] = Provenance.from_dict(value["__provenance__"])
            else:
                kwargs[name] = _restore_json(result_cls, name, value)
        return result_cls(**kwargs)  # type: ignore[return-value]


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.dtype):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result's metadata")


def _restore_json(cls: type, name: str, value: Any) -> Any:
    """Lists that were tuples in the dataclass come back as tuples."""
    fld = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if fld is not None and isinstance(value, list) and "tuple" in str(fld.type):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(target: Path, payload: bytes) -> None:
    """Write ``payload`` to ``target`` via a temporary file and an atomic rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
