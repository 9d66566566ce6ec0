"""ResidualNorms: the norm of one position's residual stream at every layer."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .._checks import require_int, require_position
from .._types import PointNorms, Residual, ResidualAtPos, Tokens
from ..plotting import style
from ..results import Provenance, Result
from ..results._describe import short_point
from ._base import Analyzer, RunRecord, as_float64, last_position
from ._memory import ModelShape, Part

if TYPE_CHECKING:  # a type only: these take any object with the adapter's attributes
    from .._adapter import ModelAdapter


@dataclass
class ResidualNormsResult(Result):
    """Per-layer L2 norms of one position's residual stream, for one run.

    Attributes:
        norms: ``[batch, point]`` float64 norms; point k is v(k) (k = 0 is the input to
            block 0), optionally followed by the final norm output y_n.
        points: Hook name of each point.
        position: Sequence position measured (-1: the last token).
        tokens: Token ids of the run ``[batch, pos]``, if known.
        provenance: Where the numbers came from.
    """

    norms: PointNorms
    points: tuple[str, ...]
    position: int
    tokens: Tokens | None
    provenance: Provenance

    def __post_init__(self) -> None:
        if self.norms.ndim != 2 or self.norms.shape[1] != len(self.points):
            raise ValueError(
                f"norms must be [batch, {len(self.points)}], got {tuple(self.norms.shape)}"
            )

    def headline(self) -> str:
        """The first and last point's norm of row 0."""
        first, last = float(self.norms[0, 0]), float(self.norms[0, -1])
        return (
            f"‖residual[{self.position}]‖₂ at {len(self.points)} points: {first:.4g} at "
            f"{short_point(self.points[0])} → {last:.4g} at {short_point(self.points[-1])}"
            + (f" (row 0 of {self.norms.shape[0]})" if self.norms.shape[0] > 1 else "")
        )

    def to_dataframe(self) -> Any:
        """Long table: one row per (batch row, point).

        Returns:
            ``pandas.DataFrame`` with columns batch, point, hook, norm.
        """
        import pandas as pd

        rows = [
            {"batch": b, "point": k, "hook": hook, "norm": float(self.norms[b, k])}
            for b in range(self.norms.shape[0])
            for k, hook in enumerate(self.points)
        ]
        return pd.DataFrame(rows)

    def plot(self, ax: Any = None) -> Any:
        """Norm against layer, one line per batch row.

        Returns:
            The matplotlib Figure (the one ``ax`` belongs to, when given).
        """
        import matplotlib.pyplot as plt

        with style():
            if ax is None:
                _, ax = plt.subplots(figsize=(6, 3.5))
            for b in range(self.norms.shape[0]):
                ax.plot(
                    range(len(self.points)), self.norms[b].numpy(), marker="o", label=f"row {b}"
                )
            ax.set_xlabel("residual point k (v(k); 0 = embeddings)")
            ax.set_ylabel(f"‖residual[{self.position}]‖₂")
            ax.set_title(self.provenance.model_name)
            if self.norms.shape[0] > 1:
                ax.legend()
            return ax.figure


class ResidualNorms(Analyzer[ResidualNormsResult]):
    """Per-layer norm of one position's residual stream (default: the last token).

    ``position`` indexes the sequence dimension as given: in a right-padded batch the last
    column is padding for the shorter rows, so measure such batches row by row (or pad
    on the left, with a model that handles left padding).

    Args:
        position: Sequence position to measure.
        include_final_norm: Also report the final norm's output y_n.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.attach(model, osl.ResidualNorms()) as rec:
        ...     _ = model(model.to_tokens("1 1 1"))
        >>> rec.results["ResidualNorms"][0].norms.shape
        torch.Size([1, 3])
    """

    def __init__(self, *, position: int = -1, include_final_norm: bool = False) -> None:
        self.position = require_int("position", position)
        self.include_final_norm = include_final_norm

    def hook_names(self, adapter: "ModelAdapter") -> list[str]:
        """v(0) .. v(L), and y_n if requested."""
        points = adapter.residual_points
        return points + [adapter.final_norm] if self.include_final_norm else points

    def memory_parts(
        self, shape: ModelShape, hook_names: list[str], batch: int, n: int
    ) -> list[Part]:
        """One position per point: ``batch × d_model`` values each."""
        size = len(hook_names) * batch * shape.d_model * shape.element_size
        return [Part("ResidualNorms' kept positions", size, host=True)]

    def keep(self, name: str, activation: Residual) -> ResidualAtPos:
        """Only the measured position: [batch, d_model]."""
        require_position("position", self.position, activation.shape[1])
        return last_position(activation, self.position)

    def compute(self, run: RunRecord) -> ResidualNormsResult:
        """Norms from the kept vectors, in float64."""
        self.check_run(run)
        stacked = as_float64([run.activations[n] for n in run.hook_names])
        assert run.provenance is not None
        return ResidualNormsResult(
            norms=torch.linalg.vector_norm(stacked, dim=-1),
            points=tuple(run.hook_names),
            position=self.position,
            tokens=run.tokens,
            provenance=run.provenance,
        )
