"""PathResult: attention-path weights to the last token, per layer, for one run."""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float64
from torch import Tensor

from .._types import HeadPathWeights, HeadScale, LayerPathWeights, LayerValues, PathWeights, Tokens
from ..plotting import style
from ..results import Provenance, Result
from ..results._describe import share_line
from ._path_math import path_summary

PATH_METHODS = ("bound", "rollout", "context", "value", "flow", "certified")
HEAD_SPECS = ("mean", "max", "each", "weighted", "sum")


@dataclass
class PathResult(Result):
    """Weight of all causal attention paths from each position to the last one.

    ``weights[b, ℓ, i]`` is the last row of Ā(ℓ)⋯Ā(0) for batch row b: the paths from
    position i to the last position through layers 0..ℓ (the paper's §5). For ``bound`` the
    sensitivity bound of Thm 5.1 is ``constant[ℓ] * weights[b, ℓ, i]``
    (:attr:`sensitivity_bound`).

    Attributes:
        weights: ``[batch, layer, pos]`` float64 path weights.
        uniform: ``[layer, pos]`` float64: the same method's weights when every head
            attends uniformly over the causal prefix (Λ_ij = 1/i), same n and layers.
        method: ``"bound"``, ``"rollout"``, ``"context"``, ``"value"``, ``"flow"`` or
            ``"certified"``.
        heads: How heads were combined: ``"mean"``, ``"max"``, ``"each"`` (mean, plus
            per-head rows in ``head_weights``), ``"weighted"`` (``head_scale``) or
            ``"sum"`` (value and certified: every head's own term, summed).
        provenance: Where the numbers came from.
        head_weights: ``[batch, layer, head, pos]`` with ``heads="each"``: the last row of
            Ā_h(ℓ)·P_{ℓ−1}, head h's own layer on top of the head-mean product P below.
        head_scale: ``[layer, head]`` weights of ``"weighted"`` heads.
        constant: ``[layer]`` float64, ``bound`` only: C_ℓ = (1/β3)·Π_{k≤ℓ}(σ_ψ/β2(k) + 1),
            the constant of Thm 5.1 for the model truncated after layer ℓ (the last entry
            is the paper's C). Not multiplied into ``weights``.
        beta1: β1 per layer (``bound``).
        beta2: β2 per layer (``bound``).
        beta3: β3 (``bound``).
        sigma_psi: σ_ψ (``bound``).
        tokens: Token ids ``[batch, pos]`` of the run, if known.
        str_tokens: Token strings of batch row 0.
        final_factor: ``[batch]`` float64, ``certified`` only: the final norm's
            ‖J_final(v_n(L))‖₂, the factor from the last block's bound to y_n's.
        product_dtype: ``"float64"`` or ``"float32"``: the running product's dtype
            (bound, rollout, context).
        rounding_relative: ``[layer]`` float64 (bound, rollout, context): c_ℓ of the
            rounding bound |weights − exact| ≤ c_ℓ·exact + t_ℓ, where exact is the product
            of the model's patterns in exact arithmetic (see :attr:`rounding_error`).
        rounding_absolute: ``[layer]`` float64: t_ℓ, the underflow part of that bound.

    For ``certified``, ``weights[b, ℓ, i]`` is already the bound on
    ‖∂v_n(ℓ+1)/∂v_i(0)‖₂ (spectral norm, frozen attention), not a path weight.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> result = osl.attention_paths(model, "1 2 3", method="rollout")
        >>> result.attenuation.shape  # [batch, layer, pos]
        torch.Size([1, 2, 4])
        >>> list(result.summary().columns[:5])
        ['batch', 'layer', 'first', 'last', 'early']
    """

    weights: PathWeights
    uniform: LayerPathWeights
    method: str
    heads: str
    provenance: Provenance
    head_weights: HeadPathWeights | None = None
    head_scale: HeadScale | None = None
    constant: LayerValues | None = None
    beta1: tuple[float, ...] = ()
    beta2: tuple[float, ...] = ()
    beta3: float = 1.0
    sigma_psi: float = 1.0
    tokens: Tokens | None = None
    str_tokens: tuple[str, ...] = ()
    final_factor: Float64[Tensor, " batch"] | None = None
    product_dtype: str = "float64"
    rounding_relative: LayerValues | None = None
    rounding_absolute: LayerValues | None = None

    def __post_init__(self) -> None:
        if self.method not in PATH_METHODS:
            raise ValueError(f"method must be one of {PATH_METHODS}, got {self.method!r}")
        if (self.method == "certified") != (self.final_factor is not None):
            raise ValueError("final_factor is given exactly when method == 'certified'")
        if self.heads not in HEAD_SPECS:
            raise ValueError(f"heads must be one of {HEAD_SPECS}, got {self.heads!r}")
        if self.weights.ndim != 3 or self.uniform.shape != self.weights.shape[1:]:
            raise ValueError(
                f"weights [batch, layer, pos] {tuple(self.weights.shape)} and uniform "
                f"[layer, pos] {tuple(self.uniform.shape)} do not match"
            )
        if (self.heads == "each") != (self.head_weights is not None):
            raise ValueError("head_weights is given exactly when heads == 'each'")
        if (self.method == "bound") != (self.constant is not None):
            raise ValueError("constant is given exactly when method == 'bound'")
        if self.product_dtype not in ("float64", "float32"):
            raise ValueError(f"product_dtype is 'float64' or 'float32', got {self.product_dtype!r}")
        if (self.rounding_relative is None) != (self.rounding_absolute is None):
            raise ValueError("rounding_relative and rounding_absolute come together")
        self.str_tokens = tuple(self.str_tokens)

    # ------------------------------------------------------------------ derived
    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return int(self.weights.shape[1])

    @property
    def n_positions(self) -> int:
        """Sequence length n."""
        return int(self.weights.shape[2])

    @property
    def attenuation(self) -> PathWeights:
        """``weights / uniform``: below 1 where the model's attention carries less than uniform.

        ``[batch, layer, pos]`` float64.
        """
        return self.weights / self.uniform

    @property
    def rounding_error(self) -> PathWeights:
        """A bound on each weight's rounding error: ``[batch, layer, pos]`` float64.

        |weights − exact| ≤ ``rounding_error``, with exact the path product of the model's
        attention patterns in exact arithmetic (the bound of
        :class:`~oversquash_lens.analyzers._path_math.RoundingBound`, evaluated at the
        computed weights: c·w/(1 − c) + t/(1 − c)).

        Raises:
            ValueError: For results without a rounding bound (value, flow, certified, or
                saved before it was kept).
        """
        if self.rounding_relative is None or self.rounding_absolute is None:
            raise ValueError(
                f"{self.method!r} results carry no rounding bound (bound, rollout and context do)"
            )
        c = self.rounding_relative[None, :, None]
        t = self.rounding_absolute[None, :, None]
        return (c * self.weights + t) / (1 - c)

    @property
    def sensitivity_bound(self) -> PathWeights:
        """The bound on the sensitivity of each layer's last-token output.

        ``bound``: Thm 5.1's ``constant[ℓ]·weights`` (``[batch, layer, pos]``; a bound only
        when the β and σ_ψ given hold for the model). ``certified``: ``[batch, layer + 1,
        pos]``, block ℓ's output for ℓ < L, then y_n; a true bound on the spectral norm of
        the frozen-attention Jacobian.

        Raises:
            ValueError: For the other methods (they are proxies, not bounds).
        """
        if self.final_factor is not None:
            final = self.weights[:, -1:] * self.final_factor[:, None, None]
            return torch.cat([self.weights, final], dim=1)
        if self.constant is None:
            raise ValueError(
                "the sensitivity bound needs method='bound' or 'certified', this result "
                f"used {self.method!r}"
            )
        return self.weights * self.constant[None, :, None]

    def headline(self) -> str:
        """Where the last layer's path weight lies (batch row 0)."""
        line = (
            f"{self.method} path weights to the last of {self.n_positions} tokens through "
            f"{self.n_layers} layers; after the last layer {share_line(self.weights[0, -1])}"
        )
        if self.product_dtype == "float32" and self.rounding_relative is not None:
            line += (
                f" (float32 product: within {self.rounding_relative[-1].item():.1e} relative "
                "of exact arithmetic)"
            )
        return line

    def summary(self) -> Any:
        """Per-layer summary statistics of the path-weight profile (as shares of the total).

        Returns:
            ``pandas.DataFrame``, one row per (batch, layer), columns: batch, layer, first,
            last, early, middle, late, argmin, min, entropy, entropy_ratio (see
            :func:`~oversquash_lens.analyzers._path_math.path_summary`).
        """
        import pandas as pd

        stats = path_summary(self.weights)
        rows = []
        for b in range(self.weights.shape[0]):
            for layer in range(self.n_layers):
                row: dict[str, Any] = {"batch": b, "layer": layer}
                for key, value in stats.items():
                    item = value[b, layer].item()
                    row[key] = int(item) if key == "argmin" else float(item)
                rows.append(row)
        return pd.DataFrame(rows)

    def to_dataframe(self, per_head: bool = False) -> Any:
        """Long table: one row per (batch, layer, position), or per head too.

        Args:
            per_head: Rows for each head's ``head_weights`` (needs ``heads="each"``).

        Returns:
            ``pandas.DataFrame`` with columns batch, layer, [head,] position, token_id,
            token (strings known for batch row 0 only), weight, uniform, attenuation.
        """
        import pandas as pd

        if per_head and self.head_weights is None:
            raise ValueError("per-head rows need a result computed with heads='each'")
        values = self.head_weights if per_head else self.weights[:, :, None, :]
        assert values is not None
        batch, n_layers, n_heads, n = values.shape
        grid = torch.stack(
            torch.meshgrid(
                torch.arange(batch),
                torch.arange(n_layers),
                torch.arange(n_heads),
                torch.arange(n),
                indexing="ij",
            ),
            dim=-1,
        ).reshape(-1, 4)
        b, layer, head, pos = grid.unbind(-1)
        uniform = self.uniform[layer, pos]
        flat = values.reshape(-1)
        ids = self.tokens[b, pos] if self.tokens is not None else torch.full_like(pos, -1)
        strings = [
            self.str_tokens[p] if r == 0 and p < len(self.str_tokens) else None
            for r, p in zip(b.tolist(), pos.tolist(), strict=True)
        ]
        columns: dict[str, Any] = {"batch": b.numpy(), "layer": layer.numpy()}
        if per_head:
            columns["head"] = head.numpy()
        columns.update(
            position=pos.numpy(),
            token_id=ids.numpy(),
            token=strings,
            weight=flat.numpy(),
            uniform=uniform.numpy(),
            attenuation=(flat / uniform).numpy(),
        )
        return pd.DataFrame(columns)

    # ------------------------------------------------------------------ plots
    def plot(
        self,
        layers: list[int] | None = None,
        *,
        batch: int = 0,
        kind: str = "profile",
        relative: bool = False,
        ax: Any = None,
    ) -> Any:
        """Path weight over positions.

        Args:
            layers: Layers to draw (``"profile"``): default up to five, evenly spaced,
                always including the last.
            batch: Batch row.
            kind: ``"profile"`` (one line per layer, log-scale y, the uniform-attention
                reference dashed) or ``"heatmap"`` (layer × position, log10 colour).
            relative: Plot :attr:`attenuation` instead of the weights.
            ax: Matplotlib Axes to draw into.

        Returns:
            The matplotlib Figure (the one ``ax`` belongs to, when given).
        """
        import matplotlib.pyplot as plt

        with style():
            if kind not in ("profile", "heatmap"):
                raise ValueError(f"kind must be 'profile' or 'heatmap', got {kind!r}")
            values = (self.attenuation if relative else self.weights)[batch]
            label = (
                "weight / uniform-attention weight" if relative else f"{self.method} path weight"
            )
            if ax is None:
                _, ax = plt.subplots(figsize=(7, 3.5))
            if kind == "heatmap":
                image = ax.imshow(
                    torch.log10(values.clamp(min=1e-300)).numpy(),
                    aspect="auto",
                    origin="lower",
                    interpolation="nearest",
                )
                ax.figure.colorbar(image, ax=ax, label=f"log10 {label}")
                ax.grid(False)  # no grid over an image
                ax.set_ylabel("layer ℓ (paths through layers 0..ℓ)")
            else:
                chosen = layers if layers is not None else self._default_layers()
                for index, layer in enumerate(chosen):
                    line = ax.plot(values[layer].numpy(), label=f"layer {layer}")[0]
                    if not relative:
                        ax.plot(
                            self.uniform[layer].numpy(),
                            linestyle="--",
                            color=line.get_color(),
                            alpha=0.5,
                            label="uniform attention" if index == 0 else None,
                        )
                ax.set_yscale("log")
                ax.set_ylabel(label)
                ax.legend(fontsize="small")
            ax.set_xlabel("input position i")
            ax.set_title(f"{self.provenance.model_name}: {self.method} paths to the last token")
            return ax.figure

    def _default_layers(self) -> list[int]:
        count = min(5, self.n_layers)
        picks = torch.linspace(0, self.n_layers - 1, count).round().long().tolist()
        return sorted(set(picks))
