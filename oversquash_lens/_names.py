"""One registry of named things: models, precision formats, tasks and report suites.

Each is a read-only mapping from names to items in registration order, with aliases,
an optional case-insensitive lookup, one refusal of a name taken twice and one message
for an unknown name that lists the known ones.
"""

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar, overload

T = TypeVar("T")
D = TypeVar("D")


class Registry(Mapping[str, T], Generic[T]):
    """Names (and aliases) to items, in registration order.

    Args:
        kind: What it holds, for messages: ``"model"``, ``"precision"``, ``"task"``.
        fold_case: Look names up case-insensitively.
        missing: The exception an unknown name raises (a ``KeyError`` by default).

    Example:
        >>> colours = Registry("colour", fold_case=True)
        >>> colours.register("Red", "#f00", "scarlet")
        '#f00'
        >>> colours["SCARLET"], list(colours), "red" in colours
        ('#f00', ['Red'], True)
        >>> colours["blue"]
        Traceback (most recent call last):
        ...
        KeyError: "unknown colour 'blue': choose one of Red"
    """

    def __init__(
        self, kind: str, *, fold_case: bool = False, missing: type[Exception] = KeyError
    ) -> None:
        self.kind = kind
        self._fold_case = fold_case
        self._missing = missing
        self._items: dict[str, T] = {}  # by key (folded when fold_case)
        self._names: dict[str, str] = {}  # key -> the name as registered
        self._aliases: dict[str, str] = {}  # alias key -> key

    def _key(self, name: str) -> str:
        return name.lower() if self._fold_case else name

    def register(self, name: str, item: T, *aliases: str) -> T:
        """Add ``item`` under ``name`` and ``aliases``; returns the item.

        Raises:
            ValueError: If the name or an alias is taken (also by this call).
        """
        keys = [self._key(k) for k in (name, *aliases)]
        for index, (key, given) in enumerate(zip(keys, (name, *aliases), strict=True)):
            if key in self._items or key in self._aliases or key in keys[:index]:
                raise ValueError(f"{self.kind} name {given!r} is already registered")
        self._items[keys[0]] = item
        self._names[keys[0]] = name
        self._aliases.update(dict.fromkeys(keys[1:], keys[0]))
        return item

    def canonical(self, name: str) -> str | None:
        """The registered name that ``name`` (a name or alias) stands for, or None."""
        key = self._key(name)
        key = self._aliases.get(key, key)
        return self._names.get(key)

    def __getitem__(self, name: str) -> T:
        canonical = self.canonical(name) if isinstance(name, str) else None
        if canonical is None:
            known = ", ".join(self)
            raise self._missing(f"unknown {self.kind} {name!r}: choose one of {known}")
        return self._items[self._key(canonical)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) is not None

    @overload
    def get(self, name: str) -> T | None: ...
    @overload
    def get(self, name: str, default: D) -> T | D: ...
    def get(self, name: str, default: object = None) -> object:
        """The item for ``name``, or ``default`` when there is none."""
        return self[name] if name in self else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"
