"""What a task hands out and gets back: an instance (prompt + truth) and a score.

Also :class:`TaskLike`, the part of a task that :func:`~oversquash_lens.compare_glasses`
uses, so a stand-in task of one's own can be compared without the whole :class:`Task`.
"""

from dataclasses import dataclass
from typing import Any, Protocol, SupportsIndex, runtime_checkable

from ._kinds import Span


@dataclass(frozen=True)
class TaskInstance:
    """One prompt of a task with its ground truth.

    Attributes:
        task: Task name, e.g. ``"copy_last"``.
        k: Length parameter.
        sample: Sample index (random tasks draw a different sequence per sample).
        text: The full user message, before any chat template.
        answer: Ground truth as text.
        value: Ground truth as an int.
        relevant_item: Index of the answer-relevant item in the sequence.
        items: The sequence's items, in order.
        spans: Character span ``(start, end)`` of each item in ``text``.

    Example:
        >>> from oversquash_lens import tasks
        >>> inst = tasks.copy_last().instance(2)
        >>> inst.items, inst.relevant_item, inst.text[inst.spans[-1][0]]
        (('1', '1', '0'), 2, '0')
    """

    task: str
    k: int
    sample: int
    text: str
    answer: str
    value: int
    relevant_item: int
    items: tuple[str, ...] = ()
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Score:
    """How one generated answer compares with the ground truth.

    Attributes:
        parsed: The parsed answer, or None when nothing parsed.
        correct: ``parsed == value``.
        abs_error: ``|parsed - value|``, or None when nothing parsed.

    Example:
        >>> Score(parsed=5, correct=False, abs_error=2.0).abs_error
        2.0
    """

    parsed: int | None
    correct: bool
    abs_error: float | None


# ------------------------------------------------------------------ what a comparison needs
@runtime_checkable
class TaskLike(Protocol):
    """What :func:`~oversquash_lens.compare_glasses` asks of a task.

    :class:`Task` has all of it; a stand-in of your own needs only these (the accuracy
    step, ``behaviour=True``, needs a :class:`Task`). ``tokens``, ``item_positions`` and
    ``pair`` take ``chat=`` and ``prepend_bos=`` where the variants set them.
    """

    @property
    def name(self) -> str:
        """The task's name (results and files are labelled with it)."""
        ...

    def instance(self, k: SupportsIndex, sample: SupportsIndex = 0) -> Any:
        """The instance with ``k`` items (its ``text`` names it)."""
        ...

    def tokens(self, *args: Any, **kwargs: Any) -> Any:
        """``tokens(model, instance, ...)``: the prompt's token ids."""
        ...

    def item_positions(self, *args: Any, **kwargs: Any) -> Any:
        """``item_positions(model, instance, ...)``: where each item's token sits."""
        ...

    def pair(self, *args: Any, **kwargs: Any) -> Any:
        """``pair(model, k, ...)``: the instances with k and k + 1 items as a pair."""
        ...
