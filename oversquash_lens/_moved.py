"""Old import paths that keep working for one release, with a ``DeprecationWarning``.

A moved name resolves through :func:`moved`, called from a module's ``__getattr__``; a
renamed subpackage stays importable under its old name through :func:`alias_module`.
"""

import importlib
import sys
import types
import warnings
from typing import Any


def moved(old: str, new: str) -> Any:
    """The object now at dotted path ``new``, after warning that ``old`` moved there.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     join = moved("old.join", "os.path.join")
        >>> join("a", "b"), caught[0].category.__name__
        ('a/b', 'DeprecationWarning')
    """
    warnings.warn(
        f"{old} moved: use {new} (the old path goes away in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )
    module, _, name = new.rpartition(".")
    return getattr(importlib.import_module(module), name)


class _Alias(types.ModuleType):
    """A module whose every attribute is the renamed module's, with a warning."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old, f"Renamed: use {new}.")
        self._new = new

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return moved(f"{self.__name__}.{name}", f"{self._new}.{name}")


def alias_module(old: str, new: str) -> None:
    """Let ``from <old> import name`` keep working after a module was renamed to ``new``.

    Only the import system sees the alias (in ``sys.modules``): the parent package's
    attribute of the old name is left alone, so a function of that name keeps it.

    Example:
        >>> import warnings
        >>> alias_module("renamed_os_path", "os.path")
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     from renamed_os_path import join
        >>> join("a", "b")
        'a/b'
    """
    sys.modules.setdefault(old, _Alias(old, new))
