"""GGUF reading pieces that do not need the real file."""

import numpy as np
import pytest

from oversquash_lens.models._gguf import llama_config_from_gguf, unpermute_rotary_rows


def llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert script: rotate-half pairs -> interleaved pairs, per head."""
    return (
        weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


@pytest.mark.parametrize("n_heads, head_dim, d_model", [(9, 64, 576), (3, 64, 576), (4, 8, 5)])
def test_unpermute_inverts_llama_cpp_permutation(n_heads: int, head_dim: int, d_model: int):
    weight = np.random.default_rng(0).standard_normal((n_heads * head_dim, d_model))
    restored = unpermute_rotary_rows(llama_cpp_permute(weight, n_heads), n_heads)
    assert np.array_equal(restored, weight)
    assert not np.array_equal(llama_cpp_permute(weight, n_heads), weight)


def test_config_from_metadata() -> None:
    metadata = {
        "general.architecture": "llama",
        "llama.block_count": 30,
        "llama.context_length": 8192,
        "llama.embedding_length": 576,
        "llama.feed_forward_length": 1536,
        "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3,
        "llama.rope.freq_base": 100000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.vocab_size": 49152,
        "llama.rope.dimension_count": 64,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
    }
    config = llama_config_from_gguf(metadata)
    shape = (config.num_hidden_layers, config.hidden_size, config.num_key_value_heads)
    assert shape == (30, 576, 3)
    assert config.rope_parameters["rope_theta"] == 100000.0
    assert config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="llama"):
        llama_config_from_gguf({**metadata, "general.architecture": "gpt2"})
