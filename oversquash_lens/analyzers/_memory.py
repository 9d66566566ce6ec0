"""Up-front memory estimates: what one forward pass, its graph and each analyzer hold.

Pure arithmetic on the model's shape and the prompt's ``batch × pos``, so a request that
cannot fit is refused before any work (``oversquash_lens._memory`` does the check). The
constants are upper bounds calibrated on this project's CPU by counting the bytes of every
tensor storage created during the run (``benchmarks/bench_memory.py`` prints the measured
peak beside the estimate for each analyzer); they hold for float32 and bfloat16 weights.

Each estimate is a list of :class:`Part`: bytes, what they are, and where they live. The
forward pass and its autograd graph live on the model's devices; what analyzers keep
(copies moved to the CPU, running path products) lives in host memory.
"""

from collections.abc import Iterable
from dataclasses import dataclass

# One eager attention layer in a no-grad pass holds about this many [batch, heads, n, n]
# tensors at once (scores, masked scores, pattern, the hook's view): 4.6-5.7 measured on
# SmolLM2-135M at n = 256..1024, float32 (the smaller n carry more of the stream below).
ATTENTION_TRANSIENT = 5.0
# A no-grad pass's other working memory per position, in units of (d_model + d_mlp)
# values: the residual stream, q/k/v, the MLP's hidden layer and their copies.
STREAM_TRANSIENT = 8.0
# The autograd graph a pass with gradients keeps per layer (frozen weights: only what the
# input's gradient needs): [batch, heads, n, n] tensors, and values per position in units
# of (d_model + d_mlp).
GRAPH_ATTENTION = 3.0
GRAPH_STREAM = 12.0
# Weight copies a pass with gradients keeps (TransformerLens' GatedMLP transposes its
# weights on every call, and the graph saves them): up to the weights' size once.
GRAPH_WEIGHTS = 1.0
# Host memory per position for the analyzers' running path products (float64 n × n: the
# product, this layer's transition matrix and one row block of the next product).
PATH_PRODUCTS = 3


@dataclass(frozen=True)
class ModelShape:
    """The sizes an estimate needs, read from a model's config.

    Attributes:
        n_layers: Blocks.
        n_heads: Query heads per layer.
        d_model: Residual width.
        d_mlp: MLP hidden width.
        d_vocab: Vocabulary size.
        element_size: Bytes per activation value (the weights' dtype).
        weight_bytes: Bytes of the model's parameters.
        eager: Whether attention materialises its ``[heads, n, n]`` pattern (always on a
            HookedTransformer; on a bridge when patterns are read).
    """

    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    d_vocab: int
    element_size: int
    weight_bytes: int
    eager: bool = True

    def patterns(self, batch: int, n: int) -> int:
        """Bytes of one layer's ``[batch, heads, n, n]`` pattern stack."""
        return batch * self.n_heads * n * n * self.element_size

    def stream(self, batch: int, n: int) -> int:
        """Bytes of ``batch × n × (d_model + d_mlp)`` activation values."""
        return batch * n * (self.d_model + self.d_mlp) * self.element_size


@dataclass(frozen=True)
class Part:
    """One item of an estimate.

    Attributes:
        what: What holds the memory, in words (it goes into error messages).
        nbytes: Bytes.
        host: True for host (CPU) memory; False for the model's devices.
        per_layer: True when the bytes are spread over the layers (a model split across
            devices holds each layer's share where that layer runs); False when one device
            holds it all at one moment (one layer's attention, the logits).
        phase: ``"run"`` when the bytes are held through the whole run; ``"forward"`` for
            the forward pass's working memory and ``"backward"`` for the backward passes'.
            The two phases never overlap, so a run needs the ``"run"`` parts plus the
            larger of the other two (:func:`needed`).
    """

    what: str
    nbytes: int
    host: bool = False
    per_layer: bool = False
    phase: str = "run"


def needed(nbytes: Iterable[tuple[str, int | float]]) -> float:
    """Peak bytes of ``(phase, bytes)`` items: the run's parts plus the larger phase.

    Example:
        >>> needed([("run", 5), ("forward", 10), ("backward", 7), ("forward", 1)])
        16.0
    """
    total = {"run": 0.0, "forward": 0.0, "backward": 0.0}
    for phase, size in nbytes:
        total[phase] += size
    return total["run"] + max(total["forward"], total["backward"])


def total_bytes(parts: Iterable[Part]) -> int:
    """Peak bytes of an estimate on one device (every part counted in full)."""
    return int(needed((p.phase, p.nbytes) for p in parts))


def forward_parts(
    shape: ModelShape,
    batch: int,
    n: int,
    *,
    grad: bool,
    logits: bool = True,
    checkpoint: bool = False,
) -> list[Part]:
    """The forward pass's own memory: one layer's working set, the logits, the graph.

    With ``checkpoint`` (blocks recomputed in the backward pass, see
    ``capture.checkpointed_blocks``) the graph is each block's input plus one block's
    graph at a time, and one block's share of the weight copies.

    Example:
        >>> shape = ModelShape(30, 9, 576, 1536, 49152, 4, 540_000_000)
        >>> parts = forward_parts(shape, 1, 8192, grad=True)
        >>> [(p.what, round(p.nbytes / 2**30, 1)) for p in parts]  # doctest: +NORMALIZE_WHITESPACE
        [('one attention layer (5 × [1, 9, 8192, 8192])', 11.2),
         ('activations of one layer', 0.5), ('the logits [1, 8192, 49152]', 1.5),
         ('the autograd graph of 30 layers', 225.7), ('weight copies in the graph', 0.5)]
    """
    parts = []
    attention = ATTENTION_TRANSIENT if shape.eager else 1.0
    parts.append(
        Part(
            f"one attention layer ({attention:g} × [{batch}, {shape.n_heads}, {n}, {n}])",
            int(attention * shape.patterns(batch, n)),
            phase="forward",
        )
    )
    stream = int(STREAM_TRANSIENT * shape.stream(batch, n))
    parts.append(Part("activations of one layer", stream, phase="forward"))
    if logits:
        size = batch * n * shape.d_vocab * shape.element_size
        parts.append(Part(f"the logits [{batch}, {n}, {shape.d_vocab}]", size))
    per_layer = GRAPH_ATTENTION * shape.patterns(batch, n) + GRAPH_STREAM * shape.stream(batch, n)
    if grad and checkpoint:
        inputs = shape.n_layers * batch * n * shape.d_model * shape.element_size
        parts.append(
            Part(f"the inputs of {shape.n_layers} checkpointed blocks", inputs, per_layer=True)
        )
        recomputed = Part(
            "one block's autograd graph, recomputed", int(per_layer), phase="backward"
        )
        weights = GRAPH_WEIGHTS * shape.weight_bytes / shape.n_layers
        copies = Part("one block's weight copies in the graph", int(weights), phase="backward")
        parts += [recomputed, copies]
    elif grad:
        parts.append(
            Part(
                f"the autograd graph of {shape.n_layers} layers",
                int(shape.n_layers * per_layer),
                per_layer=True,
            )
        )
        parts.append(Part("weight copies in the graph", int(GRAPH_WEIGHTS * shape.weight_bytes)))
    return parts


def kept_bytes(shape: ModelShape, hook_name: str, batch: int, n: int) -> int:
    """Bytes of a whole activation at ``hook_name``, as a default ``keep`` copies it."""
    if hook_name.endswith(("hook_pattern", "hook_attn_scores")):
        return shape.patterns(batch, n)
    if hook_name == "logits":
        return batch * n * shape.d_vocab * shape.element_size
    width = shape.d_mlp if ".mlp." in hook_name else shape.d_model
    return batch * n * width * shape.element_size


def path_product_bytes(batch: int, n: int, rows: int = 1) -> int:
    """Host bytes of the running float64 path products (``rows`` of them per batch row)."""
    return PATH_PRODUCTS * batch * rows * n * n * 8


def gib(nbytes: int | float) -> str:
    """Bytes as GiB (MiB below one GiB, KiB below one MiB), for messages.

    Example:
        >>> gib(3 * 2**30), gib(5 * 2**20), gib(2048)
        ('3.0 GiB', '5 MiB', '2 KiB')
    """
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:.0f} MiB"
    return f"{nbytes / 2**10:.0f} KiB"
