"""Tiny models of every architecture the path and sensitivity analyses accept.

Hooked (TransformerLens 3.x): LayerNorm with learned positions, rotary GQA, MQA, parallel
attention + MLP, local (sliding-window) attention, Gemma-2 style soft-capped scores with
norms before and after each sub-block, and raw (unfolded) LayerNorm gains. Bridges
(both TransformerLens versions): GPT-2, Llama (GQA), Mistral (sliding window), Gemma-2
(soft-caps, post-norms), GPT-J (parallel), GPT-BigCode (MQA). Every model is seeded and
built from a config: no network.
"""

import warnings
from collections.abc import Callable
from typing import Any

import torch

import oversquash_lens as osl
from oversquash_lens._compat import bridge_class, hooked_transformer_class
from oversquash_lens.models._tiny import tiny_tokenizer

INIT_STD = 0.2  # larger than usual, so random attention patterns are far from uniform


def _hooked(**config: Any) -> Any:
    from transformer_lens import HookedTransformerConfig

    tokenizer = tiny_tokenizer()
    base = {
        "n_layers": 2,
        "d_model": 32,
        "n_ctx": 64,
        "d_head": 8,
        "n_heads": 4,
        "d_mlp": 64,
        "d_vocab": len(tokenizer),
        "act_fn": "gelu_new",
        "normalization_type": "LN",
        "init_weights": True,
        "initializer_range": INIT_STD,
        "seed": 0,
    }
    cfg = HookedTransformerConfig(**(base | config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = hooked_transformer_class()(cfg, tokenizer=tokenizer)  # type: ignore[misc]
    return model.eval()


def _bridge(config: Any, name: str) -> Any:
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
    config.initializer_range = INIT_STD
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, key, getattr(tokenizer, key))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        hf_model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    bridge = bridge_class().boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


def _sizes(vocab: int) -> dict[str, Any]:
    return {"vocab_size": vocab, "num_hidden_layers": 2, "max_position_embeddings": 64}


def mistral() -> Any:
    from transformers import MistralConfig

    config = MistralConfig(
        **_sizes(len(tiny_tokenizer())),
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=3,
    )
    return _bridge(config, "zoo-mistral")


def gemma2() -> Any:
    from transformers import Gemma2Config

    config = Gemma2Config(
        **_sizes(len(tiny_tokenizer())),
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=3,
        attn_logit_softcapping=5.0,
        final_logit_softcapping=3.0,
    )
    return _bridge(config, "zoo-gemma2")


def gptj() -> Any:
    from transformers import GPTJConfig

    config = GPTJConfig(
        vocab_size=len(tiny_tokenizer()),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        rotary_dim=4,
        n_inner=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return _bridge(config, "zoo-gptj")


def bigcode() -> Any:
    from transformers import GPTBigCodeConfig

    config = GPTBigCodeConfig(
        vocab_size=len(tiny_tokenizer()),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=64,
        multi_query=True,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return _bridge(config, "zoo-bigcode")


HOOKED: dict[str, Callable[[], Any]] = {
    "hooked-gpt2": lambda: osl.load_model("tiny-gpt2"),
    "hooked-llama-gqa": lambda: osl.load_model("tiny-llama"),
    "hooked-raw-ln": lambda: osl.load_model("tiny-gpt2", processed=False),
    "hooked-mqa": lambda: _hooked(
        normalization_type="RMS",
        positional_embedding_type="rotary",
        n_key_value_heads=1,
        act_fn="silu",
        gated_mlp=True,
    ),  # fmt: skip
    "hooked-parallel": lambda: _hooked(
        parallel_attn_mlp=True, positional_embedding_type="rotary", rotary_dim=4
    ),
    "hooked-local": lambda: _hooked(attn_types=["local", "global"], window_size=3),
    "hooked-gemma2": lambda: _hooked(
        normalization_type="RMS",
        positional_embedding_type="rotary",
        n_key_value_heads=2,
        use_normalization_before_and_after=True,
        attn_scores_soft_cap=5.0,
        output_logits_soft_cap=3.0,
        act_fn="gelu_pytorch_tanh",
        gated_mlp=True,
    ),  # fmt: skip
}
BRIDGES: dict[str, Callable[[], Any]] = {
    "bridge-gpt2": lambda: osl.load_model("tiny-gpt2", backend="bridge"),
    "bridge-llama-gqa": lambda: osl.load_model("tiny-llama", backend="bridge"),
    "bridge-mistral-window": mistral,
    "bridge-gemma2": gemma2,
    "bridge-gptj-parallel": gptj,
    "bridge-bigcode-mqa": bigcode,
}


def zoo() -> dict[str, Callable[[], Any]]:
    """Every architecture available with the installed TransformerLens, by name."""
    return (HOOKED if hooked_transformer_class() is not None else {}) | BRIDGES


_CACHE: dict[str, Any] = {}


def build(name: str) -> Any:
    """The zoo model ``name``, built once per test session (tests must not change it)."""
    if name not in _CACHE:
        _CACHE[name] = zoo()[name]()
    return _CACHE[name]
