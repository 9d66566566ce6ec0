"""Seeded random test models built from configs, with the shipped offline tokenizer.

All four are Hugging Face models first (so both backends wrap the same weights):
``tiny-gpt2`` (LayerNorm, learned positions), ``tiny-llama`` (RMSNorm, rotary,
grouped-query attention), ``tiny-attn-only`` (GPT-2 layout whose MLPs are exactly zero;
the HookedTransformer drops them) and ``tiny-nope`` (GPT-2 layout whose position
embeddings are exactly zero: no positional information, causal mask only).
"""

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ._build import Source
from ._gguf import eager

TINY_TOKENIZER_DIR = "data/tiny_tokenizer"
N_CTX = 1024
INIT_STD = 0.1  # larger than GPT-2's 0.02 so random attention patterns are not uniform


@dataclass(frozen=True)
class TinySpec:
    """Shape of one tiny model."""

    arch: str  # "gpt2" or "llama"
    description: str
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 4
    d_mlp: int = 256
    attn_only: bool = False
    no_positions: bool = False
    seed: int = 0


TINY_SPECS: dict[str, TinySpec] = {
    "tiny-gpt2": TinySpec("gpt2", "2-layer GPT-2 layout: LayerNorm, learned positions"),
    "tiny-llama": TinySpec(
        "llama",
        "2-layer Llama layout: RMSNorm, rotary, grouped-query attention (4 heads, 2 KV)",
        n_kv_heads=2,
        d_mlp=128,
    ),
    "tiny-attn-only": TinySpec(
        "gpt2", "2-layer attention-only model (GPT-2 layout, no MLPs)", attn_only=True
    ),
    "tiny-nope": TinySpec(
        "gpt2", "2-layer GPT-2 layout with no positional encoding (NoPE)", no_positions=True
    ),
}


def tiny_tokenizer_path() -> Path:
    """Folder of the shipped tiny tokenizer (byte-level BPE, digits are single tokens)."""
    return Path(str(resources.files("oversquash_lens.models").joinpath(TINY_TOKENIZER_DIR)))


def tiny_tokenizer() -> Any:
    """Load the shipped tiny tokenizer (no network)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_path()))


def _hf_config(spec: TinySpec, vocab: int, tokenizer: Any) -> Any:
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if spec.arch == "gpt2":
        from transformers import GPT2Config

        return eager(
            GPT2Config(
                vocab_size=vocab,
                n_positions=N_CTX,
                n_embd=spec.d_model,
                n_layer=spec.n_layers,
                n_head=spec.n_heads,
                n_inner=spec.d_mlp,
                activation_function="gelu_new",
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                initializer_range=INIT_STD,
                **ids,
            )
        )
    return llama_config(
        vocab=vocab,
        d_model=spec.d_model,
        d_mlp=spec.d_mlp,
        n_layers=spec.n_layers,
        n_heads=spec.n_heads,
        n_kv_heads=spec.n_kv_heads,
        initializer_range=INIT_STD,
        **ids,
    )


def llama_config(
    *,
    vocab: int,
    d_model: int,
    d_mlp: int,
    n_layers: int,
    n_heads: int,
    n_kv_heads: int,
    rope_theta: float = 10000.0,
    n_ctx: int = N_CTX,
    **extra: Any,
) -> Any:
    """A Hugging Face ``LlamaConfig``, eager attention, untied embeddings.

    Shared by the small built-in models: the tiny random ones and the trained toys.
    """
    from transformers import LlamaConfig

    return eager(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=d_model,
            intermediate_size=d_mlp,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=n_kv_heads,
            max_position_embeddings=n_ctx,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
            tie_word_embeddings=False,
            **extra,
        )
    )


def tiny_source(name: str) -> Source:
    """Build the Hugging Face model and tokenizer behind a tiny model name."""
    from transformers import AutoModelForCausalLM

    spec = TINY_SPECS[name]
    tokenizer = tiny_tokenizer()
    config = _hf_config(spec, len(tokenizer), tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        hf_model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        if spec.attn_only:
            for block in hf_model.transformer.h:
                for param in block.mlp.parameters():
                    param.zero_()
        if spec.no_positions:
            hf_model.transformer.wpe.weight.zero_()
    return Source(
        name=name,
        hf_model=hf_model.eval(),
        tokenizer=tokenizer,
        prepend_bos=True,
        source=f"random init (seed {spec.seed}, std {INIT_STD}) from a {spec.arch} config",
        attn_only=spec.attn_only,
        extra={"architecture": spec.arch, "seed": spec.seed, **spec.__dict__},
    )
