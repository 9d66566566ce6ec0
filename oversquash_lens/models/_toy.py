"""Toy models trained on the paper's tasks: ``toy-count`` and ``toy-copy``.

Small Llama-layout Hugging Face models (RMSNorm, rotary positions, gated SiLU MLPs)
trained on CPU by ``scripts/train_toy_models.py`` with the shipped tiny tokenizer, on
the compact task format ``"{op}:{sequence}="`` followed by the answer digits and a
newline (``C`` counts the ones of a 0/1 sequence, ``L`` / ``F`` copy the last / first
digit). Weights ship as float16 safetensors beside the Hugging Face config and the
training record (``training.json``: settings, loss curve, held-out accuracy tables).
See ``docs/toy_models.md``.
"""

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ._build import Source
from ._tiny import llama_config, tiny_tokenizer

N_CTX = 2048  # rotary: any length runs; the training record says which lengths were trained


@dataclass(frozen=True)
class ToySpec:
    """Shape and training task of one toy model."""

    name: str
    task: str  # "count" or "copy"
    description: str
    train_len: int  # sequences of 1..train_len items during training
    steps: int
    n_layers: int = 3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 256
    rope_theta: float = 10000.0
    seed: int = 0


TOY_SPECS: dict[str, ToySpec] = {
    "toy-count": ToySpec(
        "toy-count",
        "count",
        "3-layer Llama layout trained to count the ones in 0/1 sequences (C:0110=2)",
        train_len=32,
        steps=2500,
    ),
    "toy-copy": ToySpec(
        "toy-copy",
        "copy",
        "3-layer Llama layout trained to copy the first or last digit (F:123=1, L:123=3)",
        train_len=32,
        steps=1200,
    ),
}


def toy_dir(name: str) -> Path:
    """Folder holding a toy model's ``config.json``, weights and ``training.json``."""
    return Path(str(resources.files("oversquash_lens.models").joinpath("data", name)))


def hf_config(spec: ToySpec, tokenizer: Any) -> Any:
    """The Hugging Face ``LlamaConfig`` of a toy model (eager attention)."""
    return llama_config(
        vocab=len(tokenizer),
        d_model=spec.d_model,
        d_mlp=spec.d_mlp,
        n_layers=spec.n_layers,
        n_heads=spec.n_heads,
        n_kv_heads=spec.n_heads,
        rope_theta=spec.rope_theta,
        n_ctx=N_CTX,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def training_record(name: str) -> dict[str, Any]:
    """The JSON training record shipped with a toy model.

    Args:
        name: ``"toy-count"`` or ``"toy-copy"``.

    Returns:
        Settings, loss curve, wall time, torch version and held-out accuracy tables.

    Example:
        >>> training_record("toy-copy")["spec"]["train_len"]
        32
    """
    if name not in TOY_SPECS:
        raise ValueError(f"unknown toy model {name!r}; choose one of {sorted(TOY_SPECS)}")
    return json.loads((toy_dir(name) / "training.json").read_text())


def toy_source(name: str) -> Source:
    """Build the Hugging Face model (float32, trained weights) and tokenizer of a toy."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    spec = TOY_SPECS[name]
    tokenizer = tiny_tokenizer()
    folder = toy_dir(name)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} is missing; regenerate it with "
            f"`python scripts/train_toy_models.py --only {name}`"
        )
    config = hf_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hf_model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    hf_model.load_state_dict(state, strict=True)
    return Source(
        name=name,
        hf_model=hf_model.eval(),
        tokenizer=tokenizer,
        prepend_bos=True,
        source=f"trained by scripts/train_toy_models.py (float16 weights in {folder.name}/)",
        extra={"architecture": "llama", **spec.__dict__},
    )
