"""Variants of a task: the paper's mitigations ("glasses"; Fig 2, 5d, 11) as frozen values.

A :class:`Variant` changes task fields (separators, a hint, the prompt order, chain of
thought), the precision, or the BOS choice. Build them with the constructors (also
gathered in the :class:`glasses` namespace) or from string shorthands with
:func:`parse_variant`. Pure values: nothing here touches a model.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .precision import parse_spec

SPELLINGS = (
    "baseline",
    "sep:<every>[:left|right]",
    "hint",
    "cot[:zero_shot|few_shot]",
    "question_first",
    "format_first",
    "precision:<format>",
    "bos",
    "no_bos",
)
"""String shorthands :func:`parse_variant` accepts; join several with ``+``."""


@dataclass(frozen=True)
class Variant:
    """One mitigation: changes to the task, and optionally a precision or BOS choice.

    Attributes:
        label: Name shown in tables and legends.
        task_changes: Field values to replace in the task (``dataclasses.replace``).
        precision: Precision to run in instead of the comparison's default (None: keep).
        prepend_bos: Force a BOS token on (True) or off (False); None: the task's default.

    Example:
        >>> Variant("commas", {"separator": ",", "every": 3}).task_changes["every"]
        3
    """

    label: str
    task_changes: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None
    prepend_bos: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise ValueError("a Variant needs a non-empty label")
        if self.precision is not None:
            parse_spec(self.precision)  # fails early on a bad name
        if self.prepend_bos is not None and not isinstance(self.prepend_bos, bool):
            raise TypeError(f"prepend_bos must be None, True or False, got {self.prepend_bos!r}")

    def __hash__(self) -> int:
        return hash((self.label, tuple(sorted(self.task_changes.items())), self.precision))

    def apply(self, task: Any) -> Any:
        """The task with this variant's changes.

        Raises:
            ValueError: If the task has no field of that name (names the fields it has).

        Example:
            >>> from dataclasses import dataclass
            >>> @dataclass(frozen=True)
            ... class T:
            ...     hint: bool = False
            >>> hint().apply(T())
            T(hint=True)
        """
        if not self.task_changes:
            return task
        if not dataclasses.is_dataclass(task) or isinstance(task, type):
            raise TypeError(f"variants apply to task dataclasses, got {type(task).__name__}")
        fields = [f.name for f in dataclasses.fields(task)]
        unknown = sorted(set(self.task_changes) - set(fields))
        if unknown:
            raise ValueError(
                f"variant {self.label!r} changes {unknown}, which task "
                f"{getattr(task, 'name', type(task).__name__)!r} does not have; its fields: "
                f"{fields}"
            )
        return dataclasses.replace(task, **self.task_changes)

    def describe(self) -> dict[str, Any]:
        """JSON-able form (for results).

        Example:
            >>> bos(False).describe()
            {'label': 'no_bos', 'task_changes': {}, 'precision': None, 'prepend_bos': False}
        """
        return {
            "label": self.label,
            "task_changes": dict(self.task_changes),
            "precision": self.precision,
            "prepend_bos": self.prepend_bos,
        }


def baseline() -> Variant:
    """The task as given.

    Example:
        >>> baseline().label
        'baseline'
    """
    return Variant("baseline")


def separators(every: int = 3, group: str = "left", separator: str = ",") -> Variant:
    """A separator every ``every`` items (Fig 5d, Fig 2c).

    Args:
        every: Items per group (≥ 1).
        group: ``"left"``: groups counted from the first item ("111,111,1");
            ``"right"``: from the last, like thousands ("1,111,111").
        separator: The separator text.

    Example:
        >>> separators(3, "right").label
        'sep:3:right'
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    if group not in ("left", "right"):
        raise ValueError(f"group must be 'left' or 'right', got {group!r}")
    label = f"sep:{every}:{group}" if separator == "," else f"sep:{every}:{group}:{separator!r}"
    return Variant(label, {"separator": separator, "every": every, "group": group})


def hint() -> Variant:
    """Add the paper's hint ("it's not necessarily a 1, check carefully", Fig 2b).

    Example:
        >>> hint().task_changes
        {'hint': True}
    """
    return Variant("hint", {"hint": True})


def chain_of_thought(kind: str = "zero_shot") -> Variant:
    """Chain of thought (Fig 3: it does not fix counting); paper-style tasks only.

    Args:
        kind: ``"zero_shot"`` ("Let's think step by step.") or ``"few_shot"`` (two
            worked examples first).

    Example:
        >>> chain_of_thought().task_changes
        {'cot': 'zero_shot'}
    """
    if kind not in ("zero_shot", "few_shot"):
        raise ValueError(f"chain of thought is 'zero_shot' or 'few_shot', got {kind!r}")
    return Variant("cot" if kind == "zero_shot" else f"cot:{kind}", {"cot": kind})


def order(which: str) -> Variant:
    """Put the question first (the paper's default) or the answer format first (Fig 11).

    Example:
        >>> order("format_first").task_changes
        {'order': 'format_first'}
    """
    if which not in ("question_first", "format_first"):
        raise ValueError(f"order must be 'question_first' or 'format_first', got {which!r}")
    return Variant(which, {"order": which})


def precision_variant(name: str) -> Variant:
    """Run in another precision (``"float32"``, ``"emulate:float8_e4m3"``...).

    Higher precision is the paper's third glass, argued from theory only.

    Example:
        >>> precision_variant("float32").precision
        'float32'
    """
    return Variant(f"precision:{name}", precision=name)


def bos(on: bool) -> Variant:
    """Force the BOS token on or off.

    Example:
        >>> bos(False).label
        'no_bos'
    """
    return Variant("bos" if on else "no_bos", prepend_bos=bool(on))


def parse_variant(spec: "str | Variant") -> Variant:
    """A :class:`Variant` from a shorthand; ``+`` combines several (``"sep:3+hint"``).

    Spellings: ``baseline``, ``sep:<every>[:left|right]``, ``hint``,
    ``cot[:zero_shot|few_shot]``,
    ``question_first``, ``format_first``, ``precision:<format>``, ``bos``, ``no_bos``.

    Raises:
        ValueError: For an unknown spelling, listing the valid ones.

    Example:
        >>> parse_variant("sep:3:right+precision:float32").describe()["task_changes"]
        {'separator': ',', 'every': 3, 'group': 'right'}
    """
    if isinstance(spec, Variant):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a variant is a Variant or a string, got {spec!r}")
    parts = [_parse_one(p.strip(), spec) for p in spec.split("+")]
    if len(parts) == 1:
        return dataclasses.replace(parts[0], label=spec)  # keep the user's spelling
    changes: dict[str, Any] = {}
    precisions = {p.precision for p in parts if p.precision is not None}
    boses = {p.prepend_bos for p in parts if p.prepend_bos is not None}
    if len(precisions) > 1 or len(boses) > 1:
        raise ValueError(f"variant {spec!r} asks for two precisions or two BOS choices")
    for part in parts:
        clash = set(changes) & set(part.task_changes)
        if clash:
            raise ValueError(f"variant {spec!r} sets {sorted(clash)} twice")
        changes.update(part.task_changes)
    return Variant(spec, changes, next(iter(precisions), None), next(iter(boses), None))


def _parse_one(text: str, whole: str) -> Variant:
    fixed = {
        "baseline": baseline,
        "hint": hint,
        "cot": chain_of_thought,
        "question_first": lambda: order("question_first"),
        "format_first": lambda: order("format_first"),
        "bos": lambda: bos(True),
        "no_bos": lambda: bos(False),
    }
    if text in fixed:
        return fixed[text]()
    head, _, rest = text.partition(":")
    try:
        if head == "sep" and rest:
            every, _, group = rest.partition(":")
            return separators(int(every), group or "left")
        if head == "precision" and rest:
            return precision_variant(rest)
        if head == "cot" and rest:
            return chain_of_thought(rest)
    except (ValueError, KeyError) as error:
        raise ValueError(f"bad variant {whole!r}: {error}. Valid spellings: {SPELLINGS}") from None
    raise ValueError(f"unknown variant {text!r} in {whole!r}; valid spellings: {SPELLINGS}")


class glasses:  # noqa: N801 - a namespace read as ``osl.glasses.hint()``
    """Constructors of the paper's mitigations, as :class:`Variant` objects.

    Example:
        >>> [v.label for v in (glasses.baseline(), glasses.separators(3), glasses.bos(False))]
        ['baseline', 'sep:3:left', 'no_bos']
    """

    Variant: ClassVar = Variant
    baseline = staticmethod(baseline)
    separators = staticmethod(separators)
    hint = staticmethod(hint)
    chain_of_thought = staticmethod(chain_of_thought)
    order = staticmethod(order)
    precision = staticmethod(precision_variant)  # named so: precision is a subpackage
    bos = staticmethod(bos)
    parse = staticmethod(parse_variant)
    SPELLINGS: ClassVar = SPELLINGS
