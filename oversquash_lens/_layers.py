"""The package's layers, bottom to top: a module imports only from its own layer or below.

This list is the one place the architecture is written down. ``tests/test_layers.py``
reads every import in the package (module level and inside functions) and fails on an
import that goes up a layer and on any import cycle; the README's layout section is
generated from this list (``scripts/layout.py``) and checked against it.

Every import of the package's own modules sits at the top of its file. The only imports
inside functions are the third-party libraries in :data:`DEFERRED_IMPORTS`, each with its
reason; the deprecated old paths that a module's ``__getattr__`` resolves with
``importlib`` for one release (``analyzers.attention_paths`` and ``analyzers.sensitivity``,
which moved up to the functions that run models) are not imports the test can see.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    """One layer: its name, the modules in it (dotted, under ``oversquash_lens``), its role."""

    name: str
    modules: tuple[str, ...]
    role: str


LAYERS: tuple[Layer, ...] = (
    Layer(
        "foundations",
        (
            "_errors",
            "_types",
            "_hooknames",
            "_compat",
            "_tensors",
            "_checks",
            "_json",
            "_progress",
            "_layers",
            "_moved",
            "_names",
        ),
        "errors, shared types, hook names, TransformerLens compatibility, small helpers",
    ),
    Layer(
        "precision",
        ("precision", "_dtypes"),
        "formats, rounding emulation, ε, ULP distance, the one parser of precision specs",
    ),
    Layer("theory", ("theory",), "closed forms and synthetic models of the paper's lemmas"),
    Layer("results", ("results",), "Result (atomic data-only files), Provenance, checkpoints"),
    Layer("plotting", ("plotting",), "one matplotlib style, log axes, the ε lines"),
    Layer("capture", ("capture", "_probes"), "the only code that touches hooks"),
    Layer(
        "models", ("models", "_adapter"), "the registry, builders, one adapter for both backends"
    ),
    Layer("tasks", ("tasks",), "the paper's sequence families and behavioural tasks"),
    Layer(
        "analyzers",
        ("analyzers", "_behaviour_result", "_glasses_result", "_glasses_variants"),
        "analyzer classes, pure math, result dataclasses: they never run a model",
    ),
    Layer(
        "runs",
        (
            "_run_precision",
            "_memory",
            "_attach",
            "_paths",
            "_sensitivity",
            "_trace",
            "_collapse",
            "_generate",
            "_behaviour",
            "_glasses",
            "_shards",
            "_demo",
        ),
        "the functions that run models: attach, attention_paths, sensitivity, trace, "
        "collapse, generation, behaviour, glasses, shards",
    ),
    Layer("render", ("render",), "offline HTML views (circuitsvis, the bundle inlined)"),
    Layer("reporting", ("reporting",), "the paper's suite on one model, one offline page"),
    Layer("cli", ("_cli", "_cli_args", "__main__"), "the oversquash-lens command"),
    Layer("api", ("",), "oversquash_lens/__init__.py: the curated public names"),
)


DEFERRED_IMPORTS: dict[str, str] = {
    "matplotlib": "plotting only: a figure's first draw pays for it, import does not",
    "cycler": "matplotlib's colour cycle, imported with matplotlib",
    "pandas": "tables only (``to_pandas``, ``summary``)",
    "scipy": "the max-flow of the attention-flow path method only",
    "networkx": "optional, not a dependency: the slow reference of attention flow",
    "transformer_lens": "a backend, chosen at run time (3.9 or 4.x; either may be absent)",
    "transformers": "model building and tokenizers, only when a model is loaded",
    "safetensors": "reading and writing model weights, only when a model is loaded",
    "gguf": "reading SmolLM2's GGUF weights, only when that model is loaded",
    "tqdm": "``tqdm.notebook`` only where a kernel has ipywidgets",
}
"""Third-party libraries a function may import late, and why (nothing else is imported late)."""


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a module (``oversquash_lens.x.y`` or ``x.y``).

    Raises:
        KeyError: For a module no layer lists (add it to :data:`LAYERS`).

    Example:
        >>> LAYERS[layer_of("oversquash_lens.analyzers._paths")].name
        'analyzers'
        >>> LAYERS[layer_of("oversquash_lens")].name
        'api'
    """
    name = module.removeprefix("oversquash_lens").removeprefix(".")
    best: tuple[int, int] | None = None  # (length of the matching member, layer)
    for index, layer in enumerate(LAYERS):
        for member in layer.modules:
            if member == name or (member and name.startswith(member + ".")):
                if best is None or len(member) > best[0]:
                    best = (len(member), index)
    if best is None:
        raise KeyError(f"no layer in oversquash_lens._layers.LAYERS lists {module!r}")
    return best[1]
