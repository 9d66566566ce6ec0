"""ModelAdapter: one view over both backends, clear refusals."""

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _hooknames as names

from .conftest import TINY_MODELS


@pytest.mark.parametrize("name", TINY_MODELS)
def test_sizes_and_hook_names(load, backend: str, name: str) -> None:
    model = load(name, backend)
    adapter = osl.ModelAdapter(model)
    assert adapter.backend == backend
    assert (adapter.n_layers, adapter.d_model, adapter.n_ctx) == (2, 64, 1024)
    assert adapter.n_heads == 4 and adapter.d_head == 16
    assert adapter.n_key_value_heads == (2 if name == "tiny-llama" else 4)
    assert adapter.dtype == torch.float32 and adapter.device.type == "cpu"
    assert adapter.residual_points == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
    ]
    fired = adapter.fired_hooks()
    wanted = [adapter.embed, adapter.final_norm, *adapter.residual_points]
    wanted += [adapter.pattern(layer) for layer in range(2)] + [adapter.z(1)]
    assert set(wanted) <= fired
    adapter.require_hooks(wanted)  # does not raise


def test_hooks_carry_the_same_values_on_both_backends(load) -> None:
    from .conftest import BACKENDS

    if len(BACKENDS) < 2:
        assert BACKENDS == ("bridge",)
        return
    hooks = [names.EMBED, names.pattern(1), names.z(0), names.FINAL_NORM, names.resid_post(1)]
    got = {}
    for backend in BACKENDS:
        model = load("tiny-llama", backend)
        with torch.no_grad(), osl.record(model, hooks) as acts:
            model(model.to_tokens("How many ones 1 1 1"))
        got[backend] = acts
    for name in hooks:
        assert got["hooked"][name].shape == got["bridge"][name].shape, name
        torch.testing.assert_close(got["hooked"][name], got["bridge"][name], atol=1e-5, rtol=1e-5)


def test_rotary_models_never_fire_pos_embed(load, backend: str) -> None:
    """Decided from what fires: the bridge even lists hook_pos_embed for rotary models."""
    adapter = osl.ModelAdapter(load("tiny-llama", backend))
    assert names.POS_EMBED not in adapter.fired_hooks()
    with pytest.raises(osl.MissingHookError):
        adapter.require_hooks([names.POS_EMBED])
    with pytest.raises(osl.MissingHookError, match="Did you mean"):
        osl.record(load("tiny-llama", backend), ["blocks.0.hook_resid_pree"]).__enter__()


def test_tokens_are_validated(load, backend: str) -> None:
    adapter = osl.ModelAdapter(load("tiny-gpt2", backend))
    assert adapter.to_tokens("1 1 1").shape == (1, 4)  # BOS + 3
    assert adapter.to_tokens("1 1 1", prepend_bos=False).shape == (1, 3)
    assert adapter.to_tokens(torch.tensor([5, 6, 7])).shape == (1, 3)
    with pytest.raises(osl.EmptySequenceError):
        adapter.to_tokens("")
    with pytest.raises(osl.EmptySequenceError):
        adapter.to_tokens(torch.zeros((1, 0), dtype=torch.long))
    with pytest.raises(osl.PromptTooLongError, match="n_ctx=1024"):
        adapter.to_tokens("1" * 1100)
    with pytest.raises(ValueError, match="integer"):
        adapter.to_tokens(torch.zeros((1, 3)))
    assert adapter.to_str_tokens(adapter.to_tokens("1 2", prepend_bos=False)[0]) == ["1", " 2"]


def test_not_a_transformerlens_model() -> None:
    from oversquash_lens.models._tiny import tiny_source

    with pytest.raises(osl.UnsupportedModelError, match="boot_transformers"):
        osl.ModelAdapter(tiny_source("tiny-gpt2").hf_model)
    with pytest.raises(osl.UnsupportedModelError, match="HookedTransformer or TransformerBridge"):
        osl.ModelAdapter(torch.nn.Linear(2, 2))


def test_sdpa_bridge_still_yields_patterns() -> None:
    """A bridge over an SDPA Hugging Face model: patterns fire (the bridge computes them
    itself, or is switched to eager), and they equal the eager model's."""
    from oversquash_lens._compat import bridge_class
    from oversquash_lens.models._tiny import tiny_source

    def bridge(attn: str):
        src = tiny_source("tiny-llama")
        src.hf_model.set_attn_implementation(attn)
        model = bridge_class().boot_transformers(
            "t", hf_model=src.hf_model, tokenizer=src.tokenizer
        )
        model.enable_compatibility_mode(disable_warnings=True)
        return model

    sdpa, eager = bridge("sdpa"), bridge("eager")
    adapter = osl.ModelAdapter(sdpa)
    adapter.ensure_patterns(switch=True)
    tokens = eager.to_tokens("1 2 3 4")
    patterns = []
    for model in (sdpa, eager):
        with torch.no_grad(), osl.record(model, [names.pattern(1)]) as acts:
            model(tokens)
        patterns.append(acts[names.pattern(1)])
    torch.testing.assert_close(patterns[0], patterns[1])


def test_silent_patterns_are_refused_or_switched(load, backend: str, monkeypatch) -> None:
    """Simulated kernel without patterns: the probe says pattern hooks never fire."""
    adapter = osl.ModelAdapter(load("tiny-gpt2", backend))
    fired = adapter.fired_hooks() - {adapter.pattern(0), adapter.pattern(1)}
    monkeypatch.setattr(adapter, "_fired", fired)
    with pytest.raises(osl.PatternsUnavailableError, match="attn_implementation='eager'"):
        adapter.ensure_patterns(switch=False)
    if backend == "hooked":
        with pytest.raises(osl.PatternsUnavailableError):
            adapter.require_hooks([adapter.pattern(0)])
    else:  # the bridge is switched to eager, re-probed, and then the patterns fire
        adapter.require_hooks([adapter.pattern(0)])
        assert adapter.attention_implementation == "eager"


def test_provenance(load, backend: str) -> None:
    adapter = osl.ModelAdapter(load("tiny-llama", backend))
    prov = adapter.provenance(hook_names=["hook_embed"], precision="bfloat16", seed=3, note="x")
    assert prov.model_name == "tiny-llama" and prov.backend == backend
    assert prov.weights_processed is True and prov.dtype == "float32"
    assert prov.hook_names == ("hook_embed",) and prov.extra == {"note": "x"}
    assert prov.transformer_lens_version and prov.torch_version
    assert "tiny-llama" in prov.describe()
