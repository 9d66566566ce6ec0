"""Sensitivity: how strongly each input position moves a layer's last-token output (§5).

For every output point ℓ (each block's residual output v(ℓ+1) and the final norm output
y_n) and every input position i, ``‖∂h(ℓ) / ∂x_i‖`` at one output position (the last
token by default), where x is the input to the first block (v(0), the paper's quantity)
or the token embedding. Theorem 5.1 of the paper bounds exactly this by the path sum
over attention (the paper's §5).

How it plugs into a run: an edit hook makes x a tensor that requires grad (same value,
no copy) when the run records autograd; the analyzer keeps x and the measured position of
each output point *with their graph*; ``compute`` runs the VJPs on that graph
(``retain_graph``) and then drops its references, which frees the graph.
"""

import dataclasses
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import require_int, require_position
from .._errors import IncompatibleRunError, PatternsUnavailableError
from .._hooknames import EMBED, FINAL_NORM, pattern, resid_post, resid_pre
from .._probes import ignored_pattern_layers
from . import _jacobian as jac
from . import _jacobian_split as jac_split
from ._base import Analyzer, RunRecord
from ._memory import ModelShape, Part
from ._sensitivity_result import METHODS, NORMS, SensitivityResult
from ._split import check_split, freeze, freeze_second_half, split_tokens
from ._split import split_result as split_result
from ._vjp_budget import auto_chunk, chunk_bytes

if TYPE_CHECKING:  # a type only: these take any object with the adapter's attributes
    from .._adapter import ModelAdapter

WRT = {"resid_pre0": resid_pre(0), "embed": EMBED}
ATTENTION = ("full", "frozen", "split")
_FREED = "__sensitivity_graph_freed__"  # marks a run whose graph compute() released

# Largest Jacobian stack [batch, pos, d_out, d_in] that exact spectral norms may build.
MAX_BLOCKS_BYTES = 2 * 1024**3


class Sensitivity(Analyzer[SensitivityResult]):
    """Jacobian norms ``‖∂h(ℓ)/∂x_i‖`` of layer outputs with respect to every input token.

    Attach it to runs made with gradients enabled (it refuses ``torch.no_grad()`` and
    ``torch.inference_mode()`` runs). Each run's graph is kept until its result is
    computed: read ``rec.results`` before making many large runs, and do not call
    ``backward()`` on the run's outputs before that (or pass ``retain_graph=True``).
    Parameters' ``.grad`` is never touched.

    Methods (``norm="fro"``): ``"exact"`` uses ``d_model`` VJPs per output point (every
    input position at once); ``"hutchinson"`` uses ``probes`` Gaussian VJPs and reports a
    standard error. (``norm="spectral"``): ``"exact"`` keeps the ``d_model`` VJPs and takes
    each block's largest singular value (memory ``batch·pos·d_model²``); ``"power"`` runs
    power iteration with one JVP (double backward) and one VJP per position and step.

    Args:
        method: ``"exact"``, ``"hutchinson"`` (Frobenius only) or ``"power"`` (spectral
            only).
        probes: Hutchinson probes k (≥ 2).
        norm: ``"fro"`` (Frobenius) or ``"spectral"``.
        layers: Output points: ``"all"`` (every block output v(1)..v(L), then y_n),
            ``"final"`` (y_n only), or a sequence of block numbers (block ℓ's output is
            v(ℓ+1); negative numbers count from the end, -1 = v(L)) and ``"final"``.
        wrt: ``"resid_pre0"`` (v(0) = ``blocks.0.hook_resid_pre``, the paper's input) or
            ``"embed"`` (``hook_embed``, the token embedding before positional embeddings;
            the same Jacobian when positions are added, differs only if the model rescales).
        position: Output position measured (-1: the last token).
        seed: Seed for Hutchinson probes and power-iteration starting vectors.
        chunk_size: VJPs per batched backward pass; None: as many as fit in
            ``memory_budget``, at most 32 on CPU and 256 on CUDA.
        memory_budget: Bytes the batched backward passes may use (a rough per-VJP
            estimate); None: 1 GiB on CPU, half the free memory on CUDA.
        iterations: Maximum power-iteration steps.
        tol: Power-iteration convergence tolerance (relative change of σ per step).
        attention: ``"full"`` differentiates through everything the model computes;
            ``"frozen"`` holds every attention pattern constant (each layer's
            ``hook_pattern`` is detached), so only the value path is differentiated:
            the setting of Thm 5.1, whose input-independent attention this is. Needs
            patterns that fire (eager attention, switched on for the run) and that the
            model actually uses (checked by a probe pass). ``"split"`` is for runs whose
            batch is two copies of the same tokens: the first copy full, the second
            frozen; the result holds full, frozen and their difference (the part that
            flows through the attention scores), see :func:`split_result`.

    Example:
        >>> import oversquash_lens as osl
        >>> from oversquash_lens.analyzers._sensitivity import Sensitivity
        >>> model = osl.load_model("tiny-gpt2")
        >>> with osl.attach(model, Sensitivity(layers="final")) as rec:
        ...     _ = model(model.to_tokens("1 1 1"))
        >>> rec.result("Sensitivity").norms.shape  # [batch, point, pos]
        torch.Size([1, 1, 4])
    """

    needs_grad = True

    def __init__(
        self,
        *,
        method: str = "exact",
        probes: int = 32,
        norm: str = "fro",
        layers: str | Sequence[int | str] = "all",
        wrt: str = "resid_pre0",
        position: int = -1,
        seed: int = 0,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        iterations: int = 100,
        tol: float = 1e-6,
        attention: str = "full",
    ) -> None:
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if method == "hutchinson" and norm != "fro":
            raise ValueError(
                "Hutchinson estimates Frobenius norms only; for spectral norms use "
                "method='exact' or method='power'"
            )
        if method == "power" and norm != "spectral":
            raise ValueError("power iteration estimates spectral norms: pass norm='spectral'")
        probes = require_int("probes", probes)
        if method == "hutchinson" and probes < 2:
            raise ValueError(f"probes must be at least 2 (for a standard error), got {probes}")
        position, seed = require_int("position", position), require_int("seed", seed)
        iterations = require_int("iterations", iterations)
        if chunk_size is not None:
            chunk_size = require_int("chunk_size", chunk_size, minimum=1)
        if memory_budget is not None:
            memory_budget = require_int("memory_budget", memory_budget, minimum=1)
        if wrt not in WRT:
            raise ValueError(f"wrt must be one of {list(WRT)}, got {wrt!r}")
        if isinstance(layers, str) and layers not in ("all", "final"):
            raise ValueError(
                f"layers must be 'all', 'final' or a list of block numbers, got {layers!r}"
            )
        if iterations < 1 or not tol >= 0:
            raise ValueError("iterations must be ≥ 1 and tol ≥ 0")
        self.method, self.probes, self.norm, self.layers = method, probes, norm, layers
        self.wrt, self.position, self.seed = wrt, position, seed
        self.chunk_size, self.memory_budget = chunk_size, memory_budget
        self.iterations, self.tol = iterations, tol
        self.attention = attention

    # ------------------------------------------------------------------ wiring
    def output_points(self, n_layers: int) -> list[str]:
        """Hook names of the output points for a model with ``n_layers`` blocks.

        Raises:
            ValueError: For block numbers outside the model or repeated points.

        Example:
            >>> Sensitivity(layers=[0, -1, "final"]).output_points(4)
            ['blocks.0.hook_resid_post', 'blocks.3.hook_resid_post', 'ln_final.hook_normalized']
        """
        if self.layers == "all":
            return [resid_post(layer) for layer in range(n_layers)] + [FINAL_NORM]
        if self.layers == "final":
            return [FINAL_NORM]
        points: list[str] = []
        for item in self.layers:
            if item == "final":
                points.append(FINAL_NORM)
            elif isinstance(item, int) and not isinstance(item, bool):
                if not -n_layers <= item < n_layers:
                    raise ValueError(
                        f"layer {item} does not exist: the model has {n_layers} blocks "
                        f"(0..{n_layers - 1}, or negative from the end)"
                    )
                points.append(resid_post(item % n_layers))
            else:
                raise ValueError(f"layers items must be block numbers or 'final', got {item!r}")
        if not points or len(set(points)) != len(points):
            raise ValueError(f"layers must name distinct points, got {self.layers!r}")
        return points

    def bind(self, adapter: "ModelAdapter") -> None:
        """Check the hooks exist and that gradients can flow through the weights.

        Raises:
            IncompatibleRunError: For inference-tensor weights.
            PatternsUnavailableError: For ``attention="frozen"`` on a model whose attention
                does not use the pattern a hook returns (it could not be frozen).
        """
        super().bind(adapter)
        if any(p.is_inference() for p in adapter.model.parameters()):
            raise IncompatibleRunError(
                "Sensitivity needs gradients, but this model's weights are inference tensors "
                "(created under torch.inference_mode()), through which autograd cannot run; "
                "load the model outside inference_mode()"
            )
        if self.attention != "full":
            with adapter.eager_attention():
                ignored = ignored_pattern_layers(adapter.model)
            if ignored:
                raise PatternsUnavailableError(
                    f"attention='frozen' cannot hold {adapter.info.name}'s attention fixed: "
                    f"in layers {list(ignored)} its attention does not use the pattern that "
                    "hook_pattern returns (it is computed apart from the hook), so detaching "
                    "it would change nothing. Use attention='full', or load the model as a "
                    "HookedTransformer"
                )

    def hook_names(self, adapter: "ModelAdapter") -> list[str]:
        """The input point x, the output points, and (frozen) every layer's pattern."""
        names = [WRT[self.wrt], *self.output_points(adapter.n_layers)]
        if self.attention != "full":
            names += [pattern(layer) for layer in range(adapter.n_layers)]
        return names

    def edit_hooks(self, adapter: "ModelAdapter") -> list[tuple[str, Any]]:
        """Make x require grad (same tensor data); detach the patterns when frozen."""

        def make_differentiable(activation: Tensor, hook: Any) -> Tensor | None:
            if torch.is_grad_enabled() and not activation.requires_grad:
                return activation.detach().requires_grad_(True)
            return None

        edits = [(WRT[self.wrt], make_differentiable)]
        if self.attention != "full":
            hold = freeze if self.attention == "frozen" else freeze_second_half
            edits += [(pattern(layer), hold) for layer in range(adapter.n_layers)]
        return edits

    def memory_parts(
        self, shape: ModelShape, hook_names: list[str], batch: int, n: int
    ) -> list[Part]:
        """The batched backward passes (the graph itself is the forward pass's part)."""
        # VJPs the whole computation sends: k probes, or d_model basis vectors; power
        # iteration sends one per position in a chunk
        most = self.probes if self.method == "hutchinson" else shape.d_model
        if self.method == "power":
            most = n
        size = chunk_bytes(
            batch, n, shape.d_model, shape.element_size, self.chunk_size, self.memory_budget, most
        )
        chunk = f"{self.chunk_size} VJPs" if self.chunk_size else "VJPs"
        parts = [Part(f"one batched backward ({chunk} per pass)", size, phase="backward")]
        if self.method == "exact" and self.norm == "spectral":
            keep = batch * n * shape.d_model**2 * shape.element_size
            parts.append(Part("d_model VJPs kept for the spectral norms", keep))
        return parts

    def keep(self, name: str, activation: Tensor) -> Tensor:
        """The input tensor itself (graph attached); the measured position of each output."""
        if name.endswith("hook_pattern"):
            return torch.empty(0)  # only that it fired (the pattern was frozen) matters
        if name == WRT[self.wrt]:
            return activation if activation.requires_grad else torch.empty(0)
        require_position("position", self.position, activation.shape[1])
        if activation.requires_grad:
            return activation[:, self.position]
        # A run without autograd is refused in compute(): keep nothing big meanwhile.
        return activation[:, self.position].detach().to("cpu", copy=True)

    # ------------------------------------------------------------------ compute
    def compute(self, run: RunRecord) -> SensitivityResult:
        """Norms for every output point and input position, then release the graph.

        Raises:
            IncompatibleRunError: For runs without autograd, runs whose graph was already
                freed (a ``backward()`` in between), or where x does not reach an output.
        """
        if _FREED in run.activations:
            raise IncompatibleRunError(
                f"{self.name} already computed run {run.index} and released its graph; read "
                "the cached result with rec.result(...)"
            )
        self.check_run(run)
        wrt_hook = WRT[self.wrt]
        points = [n for n in run.hook_names if n != wrt_hook and not n.endswith("hook_pattern")]
        x = run.activations[wrt_hook]
        if self.attention == "split":
            check_split(run)
        if not x.requires_grad:
            raise IncompatibleRunError(
                f"{self.name} cannot use run {run.index}: {wrt_hook} did not require grad "
                "(did a hook of yours replace it with a detached tensor?)"
            )
        chunk = self.chunk_size or auto_chunk(x, self.memory_budget)
        rows, errors = [], []
        try:
            for point in points:
                norms, stderr = self._point(run, point, x, chunk)
                rows.append(norms)
                errors.append(stderr)
        except RuntimeError as exc:
            if "second time" in str(exc) or "already been freed" in str(exc):
                raise IncompatibleRunError(
                    f"the autograd graph of run {run.index} was freed before {self.name} "
                    "used it (a backward() inside the attach block?): read rec.results "
                    "first, or call backward(retain_graph=True)"
                ) from exc
            raise
        if run.provenance is None:  # pragma: no cover - attach always sets it
            raise IncompatibleRunError(f"run {run.index} has no provenance")
        stochastic = self.method != "exact"
        extra: dict[str, Any] = {**run.provenance.extra, "chunk_size": chunk}
        extra["d_model"] = int(x.shape[-1])
        if self.method == "power":
            extra.update(iterations=self.iterations, tol=self.tol)
        kept_errors = [e for e in errors if e is not None]
        result = SensitivityResult(
            attention=self.attention,
            norms=torch.stack(rows, dim=1),
            stderr=torch.stack(kept_errors, dim=1) if kept_errors else None,
            points=tuple(points),
            method=self.method,
            norm=self.norm,
            probes=self.probes if self.method == "hutchinson" else None,
            wrt=self.wrt,
            wrt_hook=wrt_hook,
            position=self.position,
            seed=self.seed if stochastic else None,
            tokens=split_tokens(run.tokens) if self.attention == "split" else run.tokens,
            str_tokens=tuple(run.str_tokens),
            provenance=dataclasses.replace(
                run.provenance, seed=self.seed if stochastic else None, extra=extra
            ),
        )
        run.activations.clear()  # drop the graph
        run.activations[_FREED] = torch.empty(0)
        return result

    def _point(
        self, run: RunRecord, point: str, x: Tensor, chunk: int
    ) -> tuple[Tensor, Tensor | None]:
        h = run.activations[point]
        batch, d_out = h.shape
        if not h.requires_grad:
            raise IncompatibleRunError(
                f"{self.name} cannot use run {run.index}: {point} does not depend on "
                f"{WRT[self.wrt]} through autograd (was it detached by a hook?)"
            )
        vjp = jac.graph_vjp(h, x)
        generator = torch.Generator().manual_seed(_point_seed(self.seed, point))
        if self.attention == "split":
            if self.method == "power":
                return self._split_power(h, x, generator, chunk)
            vjp, batch, h = jac_split.paired_vjp(vjp, batch // 2), batch // 2, h[: batch // 2]
        if self.method == "exact" and self.norm == "fro":
            norms = jac.frobenius_exact(vjp, batch=batch, d_out=d_out, like=h, chunk_size=chunk)
            return norms.cpu(), None
        if self.method == "hutchinson":
            est = jac.hutchinson(
                vjp,
                batch=batch,
                d_out=d_out,
                like=h,
                probes=self.probes,
                generator=generator,
                chunk_size=chunk,
            )
            return est.norm, est.norm_stderr
        if self.method == "exact":
            needed = batch * x.shape[1] * d_out * x.shape[2] * h.element_size()
            if needed > MAX_BLOCKS_BYTES:
                raise IncompatibleRunError(
                    f"exact spectral norms would hold {needed / 1024**3:.1f} GiB of Jacobian "
                    "blocks; use method='power' (power iteration) or fewer tokens"
                )
            blocks = jac.jacobian_blocks(vjp, batch=batch, d_out=d_out, like=h, chunk_size=chunk)
            return jac.spectral_from_blocks(blocks).cpu(), None
        return self._power(vjp, lambda: jac.graph_jvp(h, x), batch, x, generator, chunk), None

    def _power(
        self,
        vjp: jac.VJP,
        make_jvp: Any,
        batch: int,
        x: Tensor,
        generator: torch.Generator,
        chunk: int,
    ) -> Tensor:
        try:
            sigma = jac.spectral_power(
                vjp,
                make_jvp(),
                batch=batch,
                pos=x.shape[1],
                d_in=x.shape[2],
                like=x,
                generator=generator,
                iterations=self.iterations,
                tol=self.tol,
                chunk_size=chunk,
            )
        except (RuntimeError, NotImplementedError) as exc:
            if "second time" in str(exc) or "already been freed" in str(exc):
                raise
            raise IncompatibleRunError(
                "power iteration needs double backward through the model, which failed "
                f"({exc}); use method='exact' (SVD of the exact blocks) or eager attention"
            ) from exc
        return sigma.cpu()

    def _split_power(
        self, h: Tensor, x: Tensor, generator: torch.Generator, chunk: int
    ) -> tuple[Tensor, None]:
        """Spectral norms of the full, frozen and score-path Jacobians, one power run each."""
        vjp, half = jac.graph_vjp(h, x), h.shape[0] // 2
        jvp: list[jac.JVP] = []

        def make_jvp(part: str) -> Any:
            def make() -> jac.JVP:
                if not jvp:
                    jvp.append(jac.graph_jvp(h, x))
                return jac_split.split_part(vjp, jvp[0], half, part)[1]

            return make

        parts = []
        for part in ("full", "frozen", "scores"):
            state = generator.get_state()
            part_vjp = jac_split.split_part(vjp, vjp, half, part)[0]
            sigma = self._power(part_vjp, make_jvp(part), half, x[:half], generator, chunk)
            parts.append(sigma)
            generator.set_state(state)  # the same starting vectors for every part
        return torch.cat(parts), None


def _point_seed(seed: int, point: str) -> int:
    """A seed per output point, so a layer's probes do not depend on the other layers."""
    return (seed * 1_000_003 + zlib.crc32(point.encode())) % 2**63
