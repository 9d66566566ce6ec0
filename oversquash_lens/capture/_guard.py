"""Cleanups that an interrupt cannot cut short.

A Ctrl-C (``KeyboardInterrupt``) can arrive between any two lines: after a hook is
registered but before its handle is kept, half-way through removing hooks, or in the
middle of restoring a model's dtype. Every context manager of ``capture`` therefore
follows one pattern:

* its cleanup is a function of what was recorded so far, and *idempotent*: running it
  again after it (partly) ran does nothing more than finish the job;
* what it changes is recorded *before* the change can happen (a snapshot of a hook
  point before registering, the original dtype before casting);
* the cleanup runs inside :func:`guarded`, which calls it in two nested ``finally``
  clauses: an interrupt that lands in the first run, or on the very first line of the
  inner ``finally``, is followed by a complete second run. The interrupt itself is
  re-raised afterwards, so the user's Ctrl-C still stops their program.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def guarded(cleanup: Callable[[], None]) -> Iterator[None]:
    """Run ``cleanup`` when the block ends, however it ends, even if interrupted once.

    The block may raise (or be interrupted) at any line, also half-way through its own
    set-up: ``cleanup`` must undo exactly what was done so far, and be safe to repeat.

    Example:
        >>> done = []
        >>> with guarded(lambda: done.append("clean")):
        ...     pass
        >>> done  # the second run is for an interrupted first one; it must be harmless
        ['clean', 'clean']
    """
    try:
        try:
            yield
        finally:
            cleanup()
    finally:
        cleanup()


class Token:
    """A unique marker pushed onto a shared stack, so removal can be repeated safely."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


def discard(stack: list[Token], token: Token) -> None:
    """Remove ``token`` from ``stack`` if it is still there (idempotent).

    Example:
        >>> stack = [Token("a")]
        >>> discard(stack, stack[0]); discard(stack, Token("b")); stack
        []
    """
    for i, item in enumerate(stack):
        if item is token:
            del stack[i]
            return
