"""Model registry, tiny models on both backends, loading errors."""

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens._compat import available_backends, hooked_transformer_class
from oversquash_lens.models import tiny_tokenizer

from .conftest import BACKENDS, TINY_MODELS
from .helpers import assert_close


def test_registry_lists_offline_models() -> None:
    models = osl.list_models()
    assert list(models)[:5] == [*TINY_MODELS, "smollm2-135m"]  # users may register more
    assert all(isinstance(d, str) and d for d in models.values())


def test_tiny_tokenizer_keeps_digits_and_words_whole() -> None:
    tok = tiny_tokenizer()
    for text in [*"0123456789", *[f" {d}" for d in range(10)], " ones", "How", " sequence"]:
        assert len(tok(text).input_ids) == 1, text
    assert tok("1111").input_ids == [tok("1").input_ids[0]] * 4
    assert tok.decode(tok(" a<b héllo").input_ids) == " a<b héllo"  # byte fallback


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_models_match_hugging_face(load, backend: str, name: str) -> None:
    """Both backends compute the same function as the HF model they were built from."""
    from oversquash_lens.models._tiny import tiny_source

    hf = tiny_source(name).hf_model
    tokens = torch.tensor([tok_ids("How many ones are in 1 1 1 1 0 ?")])
    with torch.no_grad():
        expected = hf(tokens).logits
        for processed in (True, False):
            model = load(name, backend, processed=processed)
            got = model(tokens)
            # processing centres the unembedding: compare logits up to a per-row constant
            assert_close(got - got.mean(-1, keepdim=True), expected - expected.mean(-1, True))


def tok_ids(text: str) -> list[int]:
    return tiny_tokenizer()(text).input_ids


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_models_are_seeded(name: str) -> None:
    backend = BACKENDS[0]
    a = osl.load_model(name, backend=backend, processed=False)
    b = osl.load_model(name, backend=backend, processed=False)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert na == nb and torch.equal(pa, pb), na


def test_tiny_architectures(load, backend: str) -> None:
    llama = load("tiny-llama", backend)
    assert (llama.cfg.n_layers, llama.cfg.n_heads, llama.cfg.n_key_value_heads) == (2, 4, 2)
    assert llama.cfg.positional_embedding_type == "rotary"
    gpt2 = load("tiny-gpt2", backend)
    assert gpt2.cfg.n_ctx == 1024 and gpt2.cfg.d_model == 64
    attn_only = load("tiny-attn-only", backend)
    names = ["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.1.hook_resid_post"]
    with torch.no_grad(), osl.record(attn_only, names) as acts:
        attn_only(gpt2.to_tokens("1 1 1"))
    # attention-only: the block output is its input plus attention, nothing else
    assert_close(
        acts["blocks.1.hook_resid_post"],
        acts["blocks.1.hook_resid_pre"] + acts["blocks.1.hook_attn_out"],
    )


def test_nope_model_has_no_positional_information(load, backend: str) -> None:
    """Without positions, a run of identical tokens has identical states at every position."""
    model = load("tiny-nope", backend)
    tokens = model.to_tokens("1" * 12, prepend_bos=False)
    with torch.no_grad(), osl.record(model, ["blocks.1.hook_resid_post"]) as acts:
        model(tokens)
    states = acts["blocks.1.hook_resid_post"][0]
    assert_close(states, states[:1].expand_as(states))


def test_processed_flag_is_recorded(load, backend: str) -> None:
    for processed in (True, False):
        info = osl.model_info(load("tiny-llama", backend, processed=processed))
        assert info.weights_processed is processed
        assert info.backend == backend and info.name == "tiny-llama"


@pytest.mark.parametrize("dtype", ["bfloat16", "float64"])
def test_load_in_other_dtypes(load, backend: str, dtype: str) -> None:
    model = load("tiny-llama", backend, dtype=dtype)
    reference = load("tiny-llama", backend)
    tokens = reference.to_tokens("1 2 3 4")
    with torch.no_grad():
        got, expected = model(tokens), reference(tokens)
    assert got.dtype == getattr(torch, dtype)
    least_precise = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    assert_close(got.float(), expected, dtype=least_precise)


def test_hooked_and_bridge_agree_in_bfloat16(load) -> None:
    if len(BACKENDS) < 2:
        assert BACKENDS == ("bridge",)  # TL 4.x: nothing to compare against
        return
    tokens = load("tiny-llama", "hooked").to_tokens("1 2 3 4")
    with torch.no_grad():
        a = load("tiny-llama", "hooked", dtype="bfloat16")(tokens)
        b = load("tiny-llama", "bridge", dtype="bfloat16")(tokens)
    assert_close(a, b, dtype=torch.bfloat16)


def test_bad_names_and_options_fail_clearly() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        osl.load_model("tiny-gpt2", backend="keras")  # type: ignore[arg-type]
    with pytest.raises(osl.UnknownPrecisionError, match="unknown precision"):
        osl.load_model("tiny-gpt2", dtype="float17")
    with pytest.raises(osl.UnsupportedPrecisionError, match="emulate_precision"):
        osl.load_model("tiny-gpt2", dtype="float8_e4m3")
    with pytest.raises(ValueError, match="CUDA devices"):
        osl.load_model("tiny-gpt2", n_devices=64)


def test_hooked_backend_availability_is_explicit() -> None:
    if hooked_transformer_class() is None:  # TransformerLens 4.x
        assert available_backends() == ("bridge",)
        with pytest.raises(osl.BackendUnavailableError, match="backend='bridge'"):
            osl.load_model("tiny-gpt2", backend="hooked")
    else:
        assert available_backends() == ("hooked", "bridge")
        assert type(osl.load_model("tiny-gpt2")).__name__ == "HookedTransformer"


def test_external_names_need_the_network(backend: str) -> None:
    """The test session is offline (HF_HUB_OFFLINE=1): a hub name must fail saying why."""
    with pytest.raises((osl.ModelLoadError, osl.UnknownModelError)) as info:
        osl.load_model("gpt2", backend=backend)
    message = str(info.value)
    assert "network" in message and "smollm2-135m" in message


def test_unknown_name_is_reported(backend: str) -> None:
    with pytest.raises((osl.UnknownModelError, osl.ModelLoadError), match="built-in"):
        osl.load_model("no-such-model-anywhere-123", backend=backend)
