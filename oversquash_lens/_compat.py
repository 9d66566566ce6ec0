"""Which TransformerLens is installed, and which model classes it has.

TransformerLens 3.x has both ``HookedTransformer`` and ``TransformerBridge``; 4.x removed
the Hooked* classes (importing them raises ImportError, and so does ``hasattr`` on the
package). Everything here imports lazily: ``import transformer_lens`` takes seconds.
"""

import functools
import importlib.metadata
import warnings
from typing import Any, Literal

import torch

from ._errors import BackendUnavailableError, UnsupportedModelError

Backend = Literal["hooked", "bridge"]
BACKENDS: tuple[Backend, ...] = ("hooked", "bridge")


@functools.cache
def tl_version() -> str:
    """Installed TransformerLens version string."""
    return importlib.metadata.version("transformer-lens")


@functools.cache
def package_version() -> str:
    """Installed oversquash-lens version string."""
    try:
        return importlib.metadata.version("oversquash-lens")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


@functools.cache
def hooked_transformer_class() -> type | None:
    """``HookedTransformer`` if this TransformerLens has it, else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from transformer_lens import HookedTransformer
    except ImportError:
        return None
    return HookedTransformer


@functools.cache
def bridge_class() -> type:
    """``TransformerBridge`` (present in TransformerLens 3.x and 4.x)."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge


def available_backends() -> tuple[Backend, ...]:
    """The backends the installed TransformerLens supports, primary first."""
    return BACKENDS if hooked_transformer_class() is not None else ("bridge",)


def require_backend(backend: str) -> Backend:
    """Validate a backend name against what is installed.

    Raises:
        ValueError: For a name other than "hooked" / "bridge".
        BackendUnavailableError: For "hooked" on TransformerLens 4.x.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "hooked" and hooked_transformer_class() is None:
        raise BackendUnavailableError(
            f"TransformerLens {tl_version()} has no HookedTransformer (removed in 4.0). "
            "Use backend='bridge', or install transformer-lens>=3.9,<4."
        )
    return backend  # type: ignore[return-value]


def backend_of(model: Any) -> Backend:
    """Classify a model object.

    Raises:
        UnsupportedModelError: For anything that is not a TransformerLens model.
    """
    hooked = hooked_transformer_class()
    if hooked is not None and isinstance(model, hooked):
        return "hooked"
    if isinstance(model, bridge_class()):
        return "bridge"
    kind = type(model).__name__
    hint = ""
    if isinstance(model, torch.nn.Module) and hasattr(model, "config"):
        hint = (
            " It looks like a Hugging Face model: wrap it with "
            "TransformerBridge.boot_transformers(name, hf_model=model) first."
        )
    raise UnsupportedModelError(
        f"expected a TransformerLens HookedTransformer or TransformerBridge, got {kind}.{hint}"
    )
