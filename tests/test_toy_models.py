"""The trained toy models toy-count and toy-copy: loading, shipped files, learned answers."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens._generate import greedy_continuation
from oversquash_lens.models._tiny import tiny_tokenizer
from oversquash_lens.models._toy import TOY_SPECS, hf_config, toy_dir, toy_source, training_record

from .helpers import assert_close

TOYS = sorted(TOY_SPECS)
ROOT = Path(__file__).resolve().parents[1]


def test_toys_are_listed() -> None:
    models = osl.list_models()
    for name in TOYS:
        assert name in models
        assert "trained" in models[name]


@pytest.mark.parametrize("name", TOYS)
def test_shipped_files_match_the_spec(name: str) -> None:
    """config.json, the weights and the training record all describe TOY_SPECS[name]."""
    from safetensors.torch import load_file

    spec = TOY_SPECS[name]
    record = training_record(name)
    assert record["spec"] == json.loads(json.dumps(asdict(spec)))
    shipped = json.loads((toy_dir(name) / "config.json").read_text())
    expected = hf_config(spec, tiny_tokenizer()).to_dict()
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        assert shipped[key] == expected[key], key
    weights = load_file(str(toy_dir(name) / "model.safetensors"))
    assert all(w.dtype == torch.float16 for w in weights.values())
    assert sum(w.numel() for w in weights.values()) == record["n_params"]
    assert weights["model.embed_tokens.weight"].shape == (len(tiny_tokenizer()), spec.d_model)
    size = (toy_dir(name) / "model.safetensors").stat().st_size
    assert size < 2.5e6  # both toys together stay under 5 MB


@pytest.mark.parametrize("name", TOYS)
def test_toys_load_on_each_backend(load, backend: str, name: str) -> None:
    spec = TOY_SPECS[name]
    model = load(name, backend)
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads) == (
        spec.n_layers,
        spec.d_model,
        spec.n_heads,
    )
    assert model.cfg.d_mlp == spec.d_mlp
    assert model.cfg.d_vocab == len(tiny_tokenizer())
    info = osl.model_info(model)
    assert (info.name, info.backend, info.prepend_bos) == (name, backend, True)
    assert info.extra["train_len"] == spec.train_len


@pytest.mark.parametrize("name", TOYS)
def test_toys_match_hugging_face(load, backend: str, name: str) -> None:
    """Both backends compute the trained HF model's function (logits up to a row constant)."""
    hf = toy_source(name).hf_model
    model = load(name, backend)
    tokens = model.to_tokens("C:1101,1=")
    with torch.no_grad():
        expected = hf(tokens).logits
        got = model(tokens)
    # TL centres the unembedding: compare after removing each row's mean
    assert_close(
        got - got.mean(-1, keepdim=True),
        expected - expected.mean(-1, keepdim=True),
        dtype=torch.float32,
    )


def _answer(model, prompt: str) -> str:
    tokenizer = tiny_tokenizer()
    tokens = model.to_tokens(prompt)
    ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    assert tokens[0].tolist() == ids  # the same token ids the model was trained on
    new = greedy_continuation(model, tokens, 5)[0].tolist()
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    return tokenizer.decode(new[: new.index(newline)] if newline in new else new)


@pytest.mark.parametrize("name", TOYS)
def test_toys_answer_in_distribution_prompts(load, backend: str, name: str) -> None:
    """Fresh greedy answers equal the recorded ones, and the models actually learned."""
    model = load(name, backend)
    checks = training_record(name)["spot_checks"]
    fresh = [_answer(model, c["prompt"]) for c in checks]
    assert fresh == [c["model_answer"] for c in checks]
    correct = sum(f == c["answer"] for f, c in zip(fresh, checks, strict=True))
    assert correct >= len(checks) - 1, (fresh, [c["answer"] for c in checks])


def test_records_show_learning() -> None:
    """In-distribution held-out accuracy recorded at training time is high."""
    count = training_record("toy-count")["held_out"]["C/bernoulli0.7/none"]
    copy = training_record("toy-copy")["held_out"]
    assert count["16"]["accuracy"] >= 0.9
    assert copy["L/random-digits/none"]["16"]["accuracy"] >= 0.95
    assert copy["F/random-digits/none"]["16"]["accuracy"] >= 0.95


@pytest.mark.slow
def test_training_is_reproducible() -> None:
    """A short training run reproduces the loss curve recorded beside the weights."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_toy_models.py"), "--repro-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK") == len(TOYS)
