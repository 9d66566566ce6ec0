"""From one Hugging Face model object to either TransformerLens backend.

Every offline model here is first a Hugging Face ``PreTrainedModel`` (eager attention,
float32, CPU) plus a tokenizer saved on disk. The bridge wraps that object directly;
the HookedTransformer gets a config mapped from the HF config and TransformerLens's own
weight converters. Both therefore compute the same function, checked by the tests.
"""

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .._compat import bridge_class, hooked_transformer_class
from .._tensors import HF_FLOAT32_BUFFERS, cast_floating_


@dataclass
class Source:
    """A model ready to be wrapped by either backend.

    Attributes:
        name: Registry name.
        hf_model: The Hugging Face model (eager attention, float32, CPU, eval mode).
        tokenizer: A tokenizer loadable again from ``tokenizer.name_or_path`` (TransformerLens
            reloads it from there).
        prepend_bos: Default for prompts.
        source: Human-readable origin of the weights.
        attn_only: Drop MLPs in the HookedTransformer (their weights are zero in ``hf_model``).
        extra: Provenance details.
    """

    name: str
    hf_model: Any
    tokenizer: Any
    prepend_bos: bool
    source: str
    attn_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def hooked_config_kwargs(hf_config: Any) -> dict[str, Any]:
    """HookedTransformerConfig fields for a GPT-2 or Llama Hugging Face config.

    Args:
        hf_config: A ``GPT2Config`` or ``LlamaConfig``.

    Returns:
        Keyword arguments for ``HookedTransformerConfig`` (without dtype/device).
    """
    arch = hf_config.model_type
    if arch == "gpt2":
        return {
            "d_model": hf_config.n_embd,
            "d_head": hf_config.n_embd // hf_config.n_head,
            "n_heads": hf_config.n_head,
            "d_mlp": hf_config.n_inner or 4 * hf_config.n_embd,
            "n_layers": hf_config.n_layer,
            "n_ctx": hf_config.n_positions,
            "eps": hf_config.layer_norm_epsilon,
            "d_vocab": hf_config.vocab_size,
            "act_fn": hf_config.activation_function,
            "normalization_type": "LN",
            "positional_embedding_type": "standard",
            "scale_attn_by_inverse_layer_idx": hf_config.scale_attn_by_inverse_layer_idx,
            "original_architecture": "GPT2LMHeadModel",
        }
    if arch == "llama":
        n_heads = hf_config.num_attention_heads
        d_head = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // n_heads
        n_kv = hf_config.num_key_value_heads
        rope = getattr(hf_config, "rope_parameters", None) or {}
        rotary_base = rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
        return {
            "d_model": hf_config.hidden_size,
            "d_head": d_head,
            "n_heads": n_heads,
            "n_key_value_heads": n_kv if n_kv != n_heads else None,
            "d_mlp": hf_config.intermediate_size,
            "n_layers": hf_config.num_hidden_layers,
            "n_ctx": hf_config.max_position_embeddings,
            "eps": hf_config.rms_norm_eps,
            "d_vocab": hf_config.vocab_size,
            "act_fn": hf_config.hidden_act,
            "normalization_type": "RMS",
            "positional_embedding_type": "rotary",
            "rotary_dim": d_head,
            "rotary_base": float(rotary_base),
            "rotary_adjacent_pairs": False,
            "final_rms": True,
            "gated_mlp": True,
            "original_architecture": "LlamaForCausalLM",
        }
    raise ValueError(f"no HookedTransformer mapping for Hugging Face model_type {arch!r}")


def _converter(hf_config: Any) -> Callable[[Any, Any], dict[str, torch.Tensor]]:
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    return {"gpt2": convert_gpt2_weights, "llama": convert_llama_weights}[hf_config.model_type]


def build_hooked(
    src: Source,
    *,
    processed: bool,
    dtype: torch.dtype,
    device: str,
    n_devices: int = 1,
) -> Any:
    """A HookedTransformer computing the same function as ``src.hf_model``.

    Weights are converted and (optionally) folded in float32, then cast to ``dtype``.
    """
    from transformer_lens import HookedTransformerConfig

    hooked_cls = hooked_transformer_class()
    assert hooked_cls is not None  # require_backend() ran first
    kwargs = hooked_config_kwargs(src.hf_model.config)
    cfg = HookedTransformerConfig(
        **kwargs,
        attn_only=src.attn_only,
        model_name=src.name,
        default_prepend_bos=src.prepend_bos,
        tokenizer_prepends_bos=False,
        dtype=torch.float32,
        device="cpu",
        n_devices=n_devices,
    )
    state_dict = _converter(src.hf_model.config)(src.hf_model, cfg)
    if src.attn_only:
        state_dict = {k: v for k, v in state_dict.items() if ".mlp." not in k and ".ln2." not in k}
    with warnings.catch_warnings():
        # HookedTransformer is deprecated in TL 3.9 in favour of the bridge; using it is a
        # deliberate choice here (it is the primary backend on TL 3.x).
        warnings.simplefilter("ignore", DeprecationWarning)
        model = hooked_cls(cfg, src.tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        {k: v.detach().float() for k, v in state_dict.items()},
        fold_ln=processed,
        center_writing_weights=processed,
        center_unembed=processed,
        fold_value_biases=processed,
        refactor_factored_attn_matrices=False,
    )
    model.cfg.device = device
    with contextlib.redirect_stdout(io.StringIO()):  # TL prints "Moving model to device"
        if n_devices > 1:
            model.move_model_modules_to_device()
        else:
            model.to(device)
        if dtype != torch.float32:
            model.to(dtype)
    return model.eval()


def build_bridge(src: Source, *, processed: bool, dtype: torch.dtype, device: str) -> Any:
    """A TransformerBridge over ``src.hf_model`` in compatibility mode.

    Booted and processed in float32, then cast to ``dtype`` the same way as the
    HookedTransformer (processing in float32 first), except that the Hugging Face rotary
    frequencies stay float32. Casting with ``.to()`` would miss the processed weights
    compatibility mode keeps as plain attributes (and breaks TL 3.9's bridge).
    ``processed`` chooses HookedTransformer-style weight processing (fold_ln, centering)
    or raw weights with the same hook names.
    """
    bridge = bridge_class().boot_transformers(
        src.name, hf_model=src.hf_model.to(device), tokenizer=src.tokenizer, dtype=torch.float32
    )
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=not processed)
    bridge.cfg.default_prepend_bos = src.prepend_bos
    if dtype != torch.float32:
        cast_floating_(bridge, dtype, keep=HF_FLOAT32_BUFFERS)
        bridge.cfg.dtype = dtype
    return bridge.eval()
