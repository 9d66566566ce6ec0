"""A task seen as a collapse family, and the plumbing to call any task's methods.

:class:`TaskPairs` turns ``task.pair(model, k)`` into the pairs ``(k, k + 1)`` that
:func:`~oversquash_lens.collapse` sweeps; :func:`token_kwargs` passes ``chat`` and
``prepend_bos`` only to the task methods that take them.
"""

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from ._base import Lengths, SequenceFamily, SequencePair, check_lengths
from ._instance import TaskLike


def task_name(task: TaskLike) -> str:
    return str(getattr(task, "name", type(task).__name__))


def task_params(task: TaskLike) -> dict[str, Any]:
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(task):
            value = getattr(task, f.name)
            ok = value is None or isinstance(value, (str, int, float, bool))
            out[f.name] = value if ok else repr(value)
        return out
    return {"repr": repr(task)}


def _accepts(method: Any, name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def token_kwargs(method: Any, chat: bool | None, prepend_bos: bool | None) -> dict[str, Any]:
    """``chat`` / ``prepend_bos`` keywords for a task method, the ones that are set."""
    out: dict[str, Any] = {}
    for name, value in (("chat", chat), ("prepend_bos", prepend_bos)):
        if value is None:
            continue
        if not _accepts(method, name):
            raise TypeError(f"{method.__qualname__} takes no {name}: cannot apply {name}={value}")
        out[name] = value
    return out


@dataclass(frozen=True, eq=False)
class TaskPairs(SequenceFamily):
    """A task's instances with k and k + 1 items, as a collapse family.

    Uses ``task.pair(model, k, chat=..., prepend_bos=...)`` (deterministic tasks).
    """

    task: TaskLike
    prepend_bos: bool | None = None
    chat: bool | None = None
    name: ClassVar[str] = "task"

    def pairs(self, model: Any, lengths: Lengths | None = None) -> list[SequencePair]:
        """The task's pair at each length (see ``task.pair``)."""
        ks = check_lengths([1] if lengths is None else lengths, 0)
        extra = token_kwargs(self.task.pair, self.chat, self.prepend_bos)
        return [self.task.pair(model, k, **extra) for k in ks]

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters."""
        return {
            "family": self.name,
            "task": task_name(self.task),
            "params": task_params(self.task),
            "prepend_bos": self.prepend_bos,
            "chat": self.chat,
        }


def distinct_instances(task: TaskLike, k: int, samples: int) -> list[Any]:
    seen: dict[str, Any] = {}
    for s in range(max(samples, 1)):
        inst = task.instance(k, s)
        seen.setdefault(str(inst.text), inst)
    return list(seen.values())
