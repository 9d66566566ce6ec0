"""Result base class: dataclasses of CPU tensors + provenance, saved atomically.

A saved result is one ``.npz`` file: every tensor field as an array, plus a JSON
``__meta__`` entry holding the class name, the format version, the other fields and
the provenance. Tensors of dtypes numpy lacks (bfloat16, the float8 formats) are
stored as their raw bits in a same-width unsigned array; ``__meta__["raw_bits"]`` maps
such a field to its torch dtype, and :meth:`Result.load` restores it bit-exactly.

Writing is atomic (:func:`~oversquash_lens.results.atomic_write_bytes`).
"""

import dataclasses
import errno
import io
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from .._errors import ResultFileError
from ._atomic import atomic_write_bytes
from ._describe import describe_fields, result_repr
from ._provenance import Provenance

FORMAT_VERSION = 2  # 2: tensors of numpy-less dtypes as raw bits ("raw_bits")
_META = "__meta__"
_RESULT_TYPES: dict[str, type["Result"]] = {}
_BIT_DTYPES = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
R = TypeVar("R", bound="Result")


class Result:
    """Base for every result dataclass.

    Subclasses are dataclasses whose fields are tensors, JSON-compatible values, or a
    :class:`Provenance` named ``provenance``. Tensors are stored detached on the CPU,
    whatever pass produced them (one with gradients, on a GPU).

    Every result prints as a few lines (:meth:`headline` and its fields, never the
    tensors' contents) and lists its fields with their meaning in :meth:`describe`.
    """

    result_type: ClassVar[str] = "Result"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.result_type = cls.__name__
        _RESULT_TYPES[cls.__name__] = cls
        own = cls.__dict__.get("__post_init__")
        if own is not None:  # detach first, whatever the subclass then checks
            cls.__post_init__ = _detaching(own)  # type: ignore[method-assign]
        if "__repr__" not in cls.__dict__:
            # @dataclass adds its own __repr__ (every tensor printed in full) only when the
            # class defines none; giving it ours here keeps every result's repr short.
            cls.__repr__ = Result.__repr__  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return result_repr(self, self.headline())

    def headline(self) -> str:
        """The result's headline numbers in a line or two (what ``repr`` shows first)."""
        return ""

    def describe(self) -> Any:
        """Every field, its value in short and what it means.

        Returns:
            ``pandas.DataFrame`` with columns field, value, meaning (from the class's
            documentation).

        Example:
            >>> import oversquash_lens as osl
            >>> model = osl.load_model("tiny-gpt2")
            >>> with osl.attach(model, osl.ResidualNorms()) as rec:
            ...     _ = model(model.to_tokens("1 2"))
            >>> rec.result("ResidualNorms").describe()["field"].tolist()
            ['norms', 'points', 'position', 'tokens', 'provenance']
        """
        return describe_fields(self)

    def __post_init__(self) -> None:
        _detach_fields(self)

    def _fields(self) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(self))  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to ``path`` (``.npz`` appended if missing), atomically.

        Tensors of any dtype are kept bit-exactly, bfloat16 and float8 included.

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
        raw_bits: dict[str, str] = {}
        for fld in self._fields():
            value = getattr(self, fld.name)
            if isinstance(value, torch.Tensor):
                arrays[fld.name], dtype_name = _tensor_to_array(value)
                if dtype_name is not None:
                    raw_bits[fld.name] = dtype_name
            elif isinstance(value, Provenance):
                meta[fld.name] = {"__provenance__": value.to_dict()}
            else:
                meta[fld.name] = value
        header = {"type": self.result_type, "format_version": FORMAT_VERSION, "fields": meta}
        if raw_bits:
            header["raw_bits"] = raw_bits
        arrays[_META] = np.array(json.dumps(header, default=_json_default))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(target, buffer.getvalue())
        return target

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str]) -> R:
        """Read a result written by :meth:`save`. Nothing in the file is ever unpickled.

        Raises:
            FileNotFoundError: If there is no file at ``path``.
            ResultFileError: If the file is corrupt, truncated, not a saved result, or
                written by a newer oversquash-lens.
            TypeError: If the file holds a different result type.
        """
        source = Path(path)
        header, arrays = _read_file(source)
        result_cls = _result_class(source, header["type"], cls)
        _check_names(source, result_cls, header, arrays)
        try:
            kwargs = _tensors(source, header, arrays)
            for name, value in header["fields"].items():
                kwargs[name] = _restore_json(result_cls, name, value)
            return result_cls(**kwargs)  # type: ignore[return-value]
        except ResultFileError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            why = f"its contents fail {result_cls.__name__}'s checks: {exc}"
            raise _unreadable(source, why) from exc


# ---------------------------------------------------------------------- tensors
def _tensor_to_array(tensor: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """The array to store, and the torch dtype's name if it holds raw bits."""
    tensor = tensor.detach().cpu().resolve_conj().resolve_neg()
    try:
        return tensor.numpy(), None
    except TypeError:  # a dtype numpy lacks: bfloat16, float8, complex32
        pass
    bits = _BIT_DTYPES.get(tensor.element_size())
    if bits is None:
        raise TypeError(f"cannot save a {tensor.dtype} tensor in a result")
    array = tensor.contiguous().view(bits).numpy()
    return array.view(f"u{array.itemsize}"), str(tensor.dtype).removeprefix("torch.")


def _array_to_tensor(source: Path, name: str, array: np.ndarray, dtype_name: Any) -> torch.Tensor:
    """Inverse of :func:`_tensor_to_array` for one field."""
    if dtype_name is None:
        return torch.from_numpy(array)
    dtype = getattr(torch, dtype_name, None) if isinstance(dtype_name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise _unreadable(
            source,
            f"field {name!r} holds {dtype_name!r} values, which this torch "
            f"{torch.__version__} does not know; upgrade torch to load it",
        )
    if array.dtype != np.dtype(f"u{dtype.itemsize}"):
        raise _unreadable(source, f"field {name!r} is {array.dtype}, not the bits of {dtype}")
    return torch.from_numpy(array.view(f"i{dtype.itemsize}")).view(dtype)


def _tensors(source: Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    raw_bits = header.get("raw_bits", {})
    return {k: _array_to_tensor(source, k, a, raw_bits.get(k)) for k, a in arrays.items()}


# ---------------------------------------------------------------------- reading
def _read_file(source: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked header and the arrays of a result file; bad files a ResultFileError."""
    _check_is_zip(source)
    try:
        # np.load leaks the file it opened when the zip is unreadable: open it here.
        with source.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            if _META not in data.files:
                raise _unreadable(
                    source,
                    f"it has no {_META} entry, so it was not written "
                    "by Result.save (plain numpy.savez files cannot be loaded)",
                )
            arrays = {k: np.array(data[k]) for k in data.files}
    except ResultFileError:
        raise
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise _unreadable(source, f"it is truncated or corrupt: {exc}") from exc
        why = "it holds pickled Python objects, which are never loaded since they can run code"
        raise _unreadable(source, why) from exc
    except OSError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError...
        why = f"it is truncated or corrupt: {type(exc).__name__}: {exc}"
        raise _unreadable(source, why) from exc
    return _parse_header(source, arrays.pop(_META)), arrays


def _check_is_zip(source: Path) -> None:
    """FileNotFoundError / ResultFileError unless ``source`` is a file that starts a zip."""
    if not source.exists():
        hint = f"; did you mean {source.name}.npz?" if Path(f"{source}.npz").is_file() else ""
        message = f"no result file at {source}{hint}"
        raise FileNotFoundError(errno.ENOENT, message, str(source))
    if source.is_dir():
        raise _unreadable(source, "it is a folder; give the path of a saved .npz file")
    with source.open("rb") as handle:
        magic = handle.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise _unreadable(source, "it is not an .npz (zip) archive")


def _parse_header(source: Path, raw: np.ndarray) -> dict[str, Any]:
    """The ``__meta__`` entry as a dict with a supported version, a type and fields."""
    try:
        header = json.loads(str(raw[()])) if raw.dtype.kind == "U" and raw.ndim == 0 else None
    except ValueError as exc:
        raise _unreadable(source, f"its {_META} entry is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise _unreadable(source, f"its {_META} entry is not a JSON object")
    _check_version(source, header.get("format_version", None))
    if not isinstance(header.get("type"), str):
        raise _unreadable(source, f"its {_META} entry names no result type")
    if not isinstance(header.get("fields"), dict):
        raise _unreadable(source, f"its {_META} entry has no fields")
    if not isinstance(header.get("raw_bits", {}), dict):
        raise _unreadable(source, f"its {_META} entry's raw_bits is not a JSON object")
    return header


def _check_version(source: Path, version: Any) -> None:
    if version is None:
        raise _unreadable(source, f"its {_META} entry has no format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _unreadable(source, f"its format_version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise ResultFileError(
            f"{source} was written by a newer oversquash-lens (format version {version}; "
            f"this one reads up to {FORMAT_VERSION}): upgrade oversquash-lens "
            "(pip install -U oversquash-lens) to load it"
        )


def _result_class(source: Path, kind: str, cls: type["Result"]) -> type["Result"]:
    """The registered class named ``kind``; TypeError unless it is ``cls`` or below."""
    result_cls = _RESULT_TYPES.get(kind, None)
    if result_cls is None:
        raise TypeError(
            f"{source} holds a {kind}, not a {cls.__name__}; no result class of that name "
            "is defined: import the module that defines it first"
        )
    if not issubclass(result_cls, cls):
        raise TypeError(
            f"{source} holds a {kind}, not a {cls.__name__}; load it with {kind}.load "
            "or Result.load"
        )
    return result_cls


def _check_names(
    source: Path, result_cls: type, header: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    """The stored names are exactly the dataclass's fields (those with defaults optional)."""
    fields = [f for f in dataclasses.fields(result_cls) if f.init]
    known = {f.name for f in fields}
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    stored = set(arrays) | set(header["fields"])
    problems = []
    if unknown := sorted(stored - known):
        problems.append(f"unknown fields {unknown}")
    if missing := sorted(required - stored):
        problems.append(f"missing fields {missing}")
    if twice := sorted(set(arrays) & set(header["fields"])):
        problems.append(f"fields stored twice {twice}")
    if stray := sorted(set(header.get("raw_bits", {})) - set(arrays)):
        problems.append(f"raw_bits for no array {stray}")
    if problems:
        why = f"its contents do not match {result_cls.__name__}: {'; '.join(problems)}"
        raise _unreadable(source, why + " (written by another version of the class?)")


def _unreadable(source: Path, why: str) -> ResultFileError:
    return ResultFileError(
        f"cannot load {source}: {why}. Pass the path of a file written by Result.save(), "
        "or re-run the analysis and save it again"
    )


# ---------------------------------------------------------------------- JSON fields
def _detach_fields(result: Any) -> None:
    """Store every tensor field detached from autograd and on the CPU.

    A result computed from a pass with gradients (an attach block with
    ``osl.Sensitivity``, say) would otherwise keep a graph alive and refuse ``numpy()``.
    """
    for fld in dataclasses.fields(result):
        value = getattr(result, fld.name)
        if isinstance(value, torch.Tensor) and (value.requires_grad or value.device.type != "cpu"):
            object.__setattr__(result, fld.name, value.detach().cpu())


def _detaching(post_init: Any) -> Any:
    def post_init_detached(self: Any) -> None:
        _detach_fields(self)
        post_init(self)

    post_init_detached.__wrapped__ = post_init  # type: ignore[attr-defined]
    return post_init_detached


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.dtype):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result's metadata")


def _restore_json(cls: type, name: str, value: Any) -> Any:
    """Provenance comes back as one; lists that were tuples in the dataclass as tuples."""
    if isinstance(value, dict) and "__provenance__" in value:
        return Provenance.from_dict(value["__provenance__"])
    fld = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if fld is not None and isinstance(value, list) and "tuple" in str(fld.type):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def public_result_classes(package: Any) -> list[type]:
    """The result classes ``package`` (``oversquash_lens``) exports, in its ``__all__`` order.

    The package is passed in: this module sits below the public API and never imports it.
    """
    exported = [getattr(package, name) for name in package.__all__]
    return [
        c for c in exported if isinstance(c, type) and issubclass(c, Result) and c is not Result
    ]
