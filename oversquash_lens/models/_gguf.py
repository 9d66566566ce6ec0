"""Read a llama-architecture GGUF file into a Hugging Face ``LlamaForCausalLM``.

Metadata gives the config; tensors are dequantized with the ``gguf`` package and renamed
to Hugging Face's layout. llama.cpp stores Q and K rows permuted for its rotary kernel
(pairs interleaved per head); we undo that permutation so Hugging Face's rotate-half
rotary code sees the original weights.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class GGUFContents:
    """Config values and float32 weights read from one GGUF file."""

    metadata: dict[str, Any]
    tensors: dict[str, np.ndarray]


def read_gguf(path: str | os.PathLike[str], *, with_tensors: bool = True) -> GGUFContents:
    """Read scalar metadata (and dequantized float32 tensors) from a GGUF file.

    Args:
        path: The ``.gguf`` file.
        with_tensors: Skip dequantization when only metadata is needed.

    Returns:
        Metadata (arrays such as the vocabulary are left out) and tensors by GGUF name.
    """
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    metadata: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model":
            if key.endswith(("tokens", "merges", "token_type", "scores")):
                continue
        try:
            metadata[key] = fld.contents()
        except Exception:  # noqa: BLE001 - unusual field types are not needed
            continue
    tensors: dict[str, np.ndarray] = {}
    if with_tensors:
        for tensor in reader.tensors:
            values = dequantize(tensor.data, tensor.tensor_type)
            shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists dims inner first
            tensors[tensor.name] = np.array(values, dtype=np.float32).reshape(shape)  # owned copy
    return GGUFContents(metadata, tensors)


def unpermute_rotary_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's Q/K row permutation (interleaved pairs -> rotate-half halves)."""
    rows = weight.shape[0]
    head_dim = rows // n_heads
    return (
        weight.reshape(n_heads, head_dim // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def llama_config_from_gguf(metadata: dict[str, Any]) -> Any:
    """A Hugging Face ``LlamaConfig`` from llama GGUF metadata (eager attention)."""
    from transformers import LlamaConfig

    arch = metadata.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"only llama-architecture GGUF files are supported, got {arch!r}")
    p = "llama."
    n_heads = int(metadata[p + "attention.head_count"])
    d_model = int(metadata[p + "embedding_length"])
    config = LlamaConfig(
        vocab_size=int(metadata.get(p + "vocab_size") or 0),  # 0: take it from the tensors
        hidden_size=d_model,
        intermediate_size=int(metadata[p + "feed_forward_length"]),
        num_hidden_layers=int(metadata[p + "block_count"]),
        num_attention_heads=n_heads,
        num_key_value_heads=int(metadata.get(p + "attention.head_count_kv", n_heads)),
        head_dim=int(metadata.get(p + "rope.dimension_count", d_model // n_heads)),
        max_position_embeddings=int(metadata[p + "context_length"]),
        rms_norm_eps=float(metadata[p + "attention.layer_norm_rms_epsilon"]),
        rope_parameters={
            "rope_type": "default",
            "rope_theta": float(metadata.get(p + "rope.freq_base", 10000.0)),
        },
        bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=metadata.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=metadata.get("tokenizer.ggml.padding_token_id"),
    )
    return eager(config)


def eager(config: Any) -> Any:
    """Ask for eager attention (patterns materialized) in a Hugging Face config."""
    config._attn_implementation = "eager"
    return config


_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def llama_state_dict(contents: GGUFContents, config: Any) -> dict[str, torch.Tensor]:
    """Hugging Face Llama state dict from GGUF tensors (Q/K rows un-permuted)."""
    out: dict[str, torch.Tensor] = {}
    for name, values in contents.tensors.items():
        if name == "token_embd.weight":
            key = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            key = "model.norm.weight"
        elif name == "output.weight":
            key = "lm_head.weight"
        elif name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            if rest not in _LAYER_NAMES:
                raise ValueError(f"unexpected GGUF tensor {name!r}")
            key = f"model.layers.{layer}.{_LAYER_NAMES[rest]}"
            if rest == "attn_q.weight":
                values = unpermute_rotary_rows(values, config.num_attention_heads)
            elif rest == "attn_k.weight":
                values = unpermute_rotary_rows(values, config.num_key_value_heads)
        else:
            raise ValueError(f"unexpected GGUF tensor {name!r}")
        out[key] = torch.from_numpy(values)
    return out


def llama_from_gguf(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Build an eager-attention float32 ``LlamaForCausalLM`` from a GGUF file.

    Returns:
        The model (eval mode) and the file's scalar metadata.
    """
    contents = read_gguf(Path(path))
    config = llama_config_from_gguf(contents.metadata)
    state_dict = llama_state_dict(contents, config)
    if not config.vocab_size:
        config.vocab_size = state_dict["model.embed_tokens.weight"].shape[0]
    config.tie_word_embeddings = "lm_head.weight" not in state_dict
    return llama_from_state_dict(config, state_dict), contents.metadata


def llama_from_state_dict(config: Any, state_dict: dict[str, torch.Tensor]) -> Any:
    """``LlamaForCausalLM`` from a config and weights, skipping random initialization."""
    from transformers import LlamaForCausalLM
    from transformers.initialization import no_init_weights

    state_dict = dict(state_dict)
    tied = bool(config.tie_word_embeddings)
    with no_init_weights():
        model = LlamaForCausalLM(config)
    if tied:
        state_dict["lm_head.weight"] = state_dict["model.embed_tokens.weight"]
    model.load_state_dict(state_dict, strict=True)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()
