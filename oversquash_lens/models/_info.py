"""What we know about a loaded model, for every result's provenance."""

import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .._compat import backend_of


@dataclass(frozen=True)
class ModelInfo:
    """How a model was loaded.

    Attributes:
        name: Registry name (``"smollm2-135m"``) or the model's own ``cfg.model_name``.
        backend: ``"hooked"`` (HookedTransformer) or ``"bridge"`` (TransformerBridge).
        weights_processed: True when LayerNorm folding / weight centering was applied (the
            TransformerLens default), False for raw weights, None when unknown.
        prepend_bos: Whether prompts get a BOS token by default.
        source: Where the weights came from (a file path, ``"random init, seed 0"``...).
        extra: Free-form details (architecture, seed, GGUF metadata).

    The attention kernel, dtype and device can change after loading; the adapter reads
    them from the model whenever a result is made.
    """

    name: str
    backend: str
    weights_processed: bool | None
    prepend_bos: bool
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


_INFO: "weakref.WeakKeyDictionary[torch.nn.Module, ModelInfo]" = weakref.WeakKeyDictionary()


def remember(model: torch.nn.Module, info: ModelInfo) -> None:
    """Attach loader provenance to a model object (held weakly)."""
    _INFO[model] = info


def model_info(model: Any) -> ModelInfo:
    """Provenance of ``model``: what the loader recorded, or what its config says.

    Args:
        model: A HookedTransformer or TransformerBridge.

    Returns:
        The model's :class:`ModelInfo`.

    Example:
        >>> import oversquash_lens as osl
        >>> info = osl.model_info(osl.load_model("tiny-nope", processed=False))
        >>> info.name, info.weights_processed
        ('tiny-nope', False)
    """
    known = _INFO.get(model)
    if known is not None:
        return known
    backend = backend_of(model)
    cfg = model.cfg
    processed: bool | None = None
    if backend == "hooked" and getattr(cfg, "normalization_type", None) is not None:
        processed = cfg.normalization_type in ("LNPre", "RMSPre")
    return ModelInfo(
        name=str(getattr(cfg, "model_name", type(model).__name__)),
        backend=backend,
        weights_processed=processed,
        prepend_bos=bool(getattr(cfg, "default_prepend_bos", True)),
        source="user-supplied model",
    )
