"""The analyzer protocol every measurement plugs into through :func:`attach`.

An analyzer (1) declares the hook points it needs for a model, (2) keeps what it needs
from each activation as the user's forward passes run (``keep``, e.g. only the last
position, detached on the CPU), and (3) computes one result per run from those kept
tensors alone (``compute`` never sees the model).
"""

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._errors import IncompatibleRunError
from ..results import Provenance, Result

if TYPE_CHECKING:
    from .._adapter import ModelAdapter


@dataclass
class RunRecord:
    """What one analyzer kept from one forward pass.

    Attributes:
        index: Run number within the ``attach`` block (0-based).
        tokens: Token ids ``[batch, pos]`` on the CPU (None if the pass started from
            embeddings).
        activations: Hook name → the tensor ``Analyzer.keep`` returned.
        grad_enabled: Whether autograd was recording during the run.
        provenance: Provenance of the model at attach time.
        str_tokens: Token strings of the first batch row (empty without tokens).
    """

    index: int
    tokens: Tensor | None
    activations: dict[str, Tensor] = field(default_factory=dict)
    grad_enabled: bool = False
    provenance: Provenance | None = None
    str_tokens: list[str] = field(default_factory=list)

    def require(self, hook_names: list[str], analyzer: str) -> None:
        """Raise if a needed hook did not fire in this run (e.g. ``stop_at_layer``)."""
        missing = [n for n in hook_names if n not in self.activations]
        if missing:
            raise IncompatibleRunError(
                f"{analyzer} cannot use run {self.index}: hook points {missing[:3]} did not "
                "fire (stopped early with stop_at_layer, or a failed forward pass?)"
            )


class Analyzer(abc.ABC):
    """Base class of attachable analyzers.

    Subclasses implement :meth:`hook_names` and :meth:`compute`, and usually
    :meth:`keep` to store less than the whole activation.
    """

    needs_grad: bool = False

    @property
    def name(self) -> str:
        """Key of this analyzer's results in ``Recording.results``."""
        return type(self).__name__

    def bind(self, adapter: "ModelAdapter") -> None:
        """Called once by ``attach`` before any run; validate against the model here."""
        self._hook_names = list(self.hook_names(adapter))
        adapter.require_hooks(self._hook_names)

    @abc.abstractmethod
    def hook_names(self, adapter: "ModelAdapter") -> list[str]:
        """Hook points this analyzer reads, for this model."""

    def keep(self, name: str, activation: Tensor) -> Tensor:
        """What to store from one activation (default: a detached CPU copy)."""
        return activation.detach().to("cpu")

    @abc.abstractmethod
    def compute(self, run: RunRecord) -> Result:
        """The result for one run, from the kept tensors only."""

    def check_run(self, run: RunRecord) -> None:
        """Refuse runs this analyzer cannot serve."""
        run.require(getattr(self, "_hook_names", []), self.name)
        if self.needs_grad and not run.grad_enabled:
            raise IncompatibleRunError(
                f"{self.name} needs gradients but run {run.index} ran under torch.no_grad() "
                "or inference_mode(); run the model with gradients enabled"
            )


def last_position(activation: Tensor, position: int) -> Tensor:
    """``activation[:, position]`` detached on the CPU, for [batch, pos, ...] tensors."""
    return activation[:, position].detach().to("cpu")


def as_float64(tensors: list[Tensor]) -> Tensor:
    """Stack kept tensors along a new axis 1 in float64 (distances are upcast first)."""
    return torch.stack([t.to(torch.float64) for t in tensors], dim=1)
