"""The analyzer protocol every measurement plugs into through :func:`attach`.

An analyzer (1) declares the hook points it needs for a model, (2) keeps what it needs
from each activation as the user's forward passes run (``keep``, e.g. only the last
position, detached on the CPU), and (3) computes one result per run from those kept
tensors alone (``compute`` never sees the model).
"""

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch
from torch import Tensor

from .._errors import IncompatibleRunError, RaggedBatchError
from ..results import Provenance, Result
from ._memory import ModelShape, Part, kept_bytes

if TYPE_CHECKING:  # a type only: these take any object with the adapter's attributes
    from .._adapter import ModelAdapter


@dataclass
class RunRecord:
    """What one analyzer kept from one forward pass.

    Attributes:
        index: Run number within the ``attach`` block (0-based).
        tokens: Token ids ``[batch, pos]`` on the CPU (None if the pass started from
            embeddings).
        hook_names: The hook points the analyzer asked for, in its order.
        activations: Hook name → the tensor ``Analyzer.keep`` returned.
        grad_enabled: Whether autograd was recording during the run.
        provenance: Provenance of the model as it ran (dtype, active precision...).
        str_tokens: Token strings of the first batch row (empty without tokens).
        padding: Why the batch rows differ in length (padding), None when they do not.
        notes: Hook name → why it did not fire, when that is known.
    """

    index: int
    tokens: Tensor | None
    hook_names: list[str] = field(default_factory=list)
    activations: dict[str, Tensor] = field(default_factory=dict)
    grad_enabled: bool = False
    provenance: Provenance | None = None
    str_tokens: list[str] = field(default_factory=list)
    padding: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def require(self, analyzer: str) -> None:
        """Raise if a needed hook did not fire in this run."""
        missing = [n for n in self.hook_names if n not in self.activations]
        if not missing:
            return
        explained = [n for n in missing if n in self.notes]
        if explained:
            name = explained[0]
            raise IncompatibleRunError(
                f"{analyzer} cannot use run {self.index}: {name} is missing: {self.notes[name]}"
            )
        if any(n.endswith("hook_pattern") for n in missing):
            raise IncompatibleRunError(
                f"{analyzer} cannot use run {self.index}: attention patterns did not fire "
                f"({missing[0]}). The attention kernel does not materialize them: load the "
                "model with attn_implementation='eager'"
            )
        raise IncompatibleRunError(
            f"{analyzer} cannot use run {self.index}: hook points {missing[:3]} did not "
            "fire (stopped early with stop_at_layer, or the forward pass failed?)"
        )


ResultT = TypeVar("ResultT", bound=Result)
"""The result type an analyzer computes (``Analyzer[PathResult]`` computes a ``PathResult``)."""


class Analyzer(abc.ABC, Generic[ResultT]):
    """Base class of attachable analyzers; ``Analyzer[R]`` computes results of type ``R``.

    Subclasses implement :meth:`hook_names` and :meth:`compute`, and usually
    :meth:`keep` to store less than the whole activation. The type parameter is what
    ``Recording.result(analyzer)`` returns, so a type checker knows the result's fields.
    """

    needs_grad: bool = False

    @property
    def name(self) -> str:
        """Key of this analyzer's results in ``Recording.results``."""
        return type(self).__name__

    def bind(self, adapter: "ModelAdapter") -> None:
        """Called once by ``attach`` before any run; validate against the model here."""
        adapter.require_hooks(self.hook_names(adapter))

    @abc.abstractmethod
    def hook_names(self, adapter: "ModelAdapter") -> list[str]:
        """Hook points this analyzer reads, for this model.

        ``"logits"`` (``oversquash_lens._hooknames.LOGITS``) is served too: the
        unembedding's output, ``[batch, pos, d_vocab]``.
        """

    def edit_hooks(self, adapter: "ModelAdapter") -> list[tuple[str, Any]]:
        """Hooks that may replace activations, run before every other hook at their point.

        Most analyzers only observe and return ``[]``. One that needs, say, a tensor that
        requires grad at the first block's input returns ``[(hook_name, fn)]`` with
        TransformerLens hook functions ``fn(activation, hook) -> Tensor | None``; the
        replacement must have the same value, so the user's run is unchanged.
        """
        return []

    def memory_parts(
        self, shape: ModelShape, hook_names: list[str], batch: int, n: int
    ) -> list[Part]:
        """What this analyzer holds during a ``batch × n`` run, for the up-front check.

        ``hook_names`` are the points it reads on this model (:meth:`hook_names`). The
        default matches the default :meth:`keep`: a CPU copy of every activation read.
        Analyzers that keep less (a position, a running product) say so here.
        """
        return [
            Part(f"{self.name}'s copy of {name}", kept_bytes(shape, name, batch, n), host=True)
            for name in hook_names
        ]

    def keep(self, name: str, activation: Tensor) -> Tensor:
        """What to store from one activation (default: a detached CPU copy)."""
        return activation.detach().to("cpu", copy=True)

    @abc.abstractmethod
    def compute(self, run: RunRecord) -> ResultT:
        """The result for one run, from the kept tensors only."""

    def check_run(self, run: RunRecord) -> None:
        """Refuse runs this analyzer cannot serve."""
        if run.padding is not None:
            raise RaggedBatchError(
                f"{self.name} cannot use run {run.index}: its batch rows have different "
                f"lengths ({run.padding}), so the measured position is padding for some "
                "rows; run each prompt on its own, or give prompts of equal length"
            )
        run.require(self.name)
        if self.needs_grad and not run.grad_enabled:
            raise IncompatibleRunError(
                f"{self.name} needs gradients but run {run.index} ran under torch.no_grad() "
                "or inference_mode(); run the model with gradients enabled"
            )


def last_position(activation: Tensor, position: int) -> Tensor:
    """A CPU copy of ``activation[:, position]`` that owns its storage.

    A view would keep the whole activation alive in memory.
    """
    return activation[:, position].detach().to("cpu", copy=True)


def as_float64(tensors: list[Tensor]) -> Tensor:
    """Stack kept tensors along a new axis 1 in float64 (distances are upcast first)."""
    return torch.stack([t.to(torch.float64) for t in tensors], dim=1)
