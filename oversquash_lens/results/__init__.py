"""Result dataclasses: provenance, atomic save/load."""

from ._base import Result as Result
from ._base import atomic_write_bytes as atomic_write_bytes
from ._provenance import Provenance as Provenance

__all__ = ["Provenance", "Result", "atomic_write_bytes"]
