"""ModelAdapter: one view over both backends, clear refusals."""

from dataclasses import dataclass

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
    model = load("tiny-llama", backend)
    adapter = osl.ModelAdapter(model)
    assert names.POS_EMBED not in adapter.fired_hooks()
    if backend == "hooked":  # HookedTransformer does not even have the hook point
        assert not adapter.has_hook(names.POS_EMBED)
        with pytest.raises(osl.MissingHookError, match="no hook points"):
            osl.attach(model, KeepHooks([names.POS_EMBED])).__enter__()
    else:  # the bridge lists it; the run that never fired it is refused
        assert adapter.has_hook(names.POS_EMBED)
        with osl.attach(model, KeepHooks([names.POS_EMBED])) as rec:
            model(model.to_tokens("1 2"))
        with pytest.raises(osl.IncompatibleRunError, match="did not fire"):
            rec.result("KeepHooks")
    with pytest.raises(osl.MissingHookError, match="Did you mean"):
        osl.record(model, ["blocks.0.hook_resid_pree"]).__enter__()


@dataclass
class Kept(osl.Result):
    activations: dict[str, torch.Tensor]


class KeepHooks(osl.Analyzer):
    """Test analyzer: keeps whole activations of the given hooks."""

    def __init__(self, hook_names: list[str]) -> None:
        self._names = hook_names

    def hook_names(self, adapter):
        return self._names

    def compute(self, run):
        self.check_run(run)
        return Kept(dict(run.activations))


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


def sdpa_bridge(attn: str):
    from oversquash_lens._compat import bridge_class
    from oversquash_lens.models._tiny import tiny_source

    src = tiny_source("tiny-llama")
    src.hf_model.set_attn_implementation(attn)
    model = bridge_class().boot_transformers("t", hf_model=src.hf_model, tokenizer=src.tokenizer)
    model.enable_compatibility_mode(disable_warnings=True)
    return model


def test_eager_attention_switches_and_restores() -> None:
    """A bridge over an SDPA Hugging Face model: switched to eager inside the block (and
    back after), and its patterns equal those of the same model loaded eager."""
    sdpa, eager = sdpa_bridge("sdpa"), sdpa_bridge("eager")
    adapter = osl.ModelAdapter(sdpa)
    before = adapter.attention_implementation
    tokens = eager.to_tokens("1 2 3 4")
    with adapter.eager_attention():
        assert adapter.attention_implementation == "eager"
        adapter.ensure_patterns()
        with torch.no_grad(), osl.record(sdpa, [names.pattern(1)]) as got:
            sdpa(tokens)
    assert adapter.attention_implementation == before
    with torch.no_grad(), osl.record(eager, [names.pattern(1)]) as expected:
        eager(tokens)
    torch.testing.assert_close(got[names.pattern(1)], expected[names.pattern(1)])


def test_attach_switches_to_eager_only_for_pattern_readers() -> None:
    model = sdpa_bridge("sdpa")
    adapter = osl.ModelAdapter(model)
    before = adapter.attention_implementation
    seen = []
    with osl.attach(model, KeepHooks([names.pattern(0)])) as rec:
        seen.append(adapter.attention_implementation)
        model(model.to_tokens("1 2"))
    with osl.attach(model, osl.ResidualNorms()):
        seen.append(adapter.attention_implementation)
    assert seen == ["eager", before] and adapter.attention_implementation == before
    assert rec.result("KeepHooks").activations[names.pattern(0)].shape == (1, 4, 3, 3)


def test_silent_patterns_are_refused(load, backend: str, monkeypatch) -> None:
    """Simulated kernel without patterns: the probe says pattern hooks never fire."""
    from oversquash_lens import _adapter

    model = load("tiny-gpt2", backend)
    adapter = osl.ModelAdapter(model)
    silent = adapter.fired_hooks() - {adapter.pattern(0), adapter.pattern(1)}
    monkeypatch.setitem(_adapter._FIRED, model, (adapter.attention_implementation, silent))
    with pytest.raises(osl.PatternsUnavailableError, match="eager_attention"):
        adapter.ensure_patterns()


def test_missing_patterns_in_a_run_are_explained(load, backend: str) -> None:
    from oversquash_lens.analyzers import RunRecord

    run = RunRecord(index=0, tokens=None, hook_names=[names.pattern(0)])
    with pytest.raises(osl.IncompatibleRunError, match="attn_implementation='eager'"):
        KeepHooks([names.pattern(0)]).compute(run)


def test_provenance(load, backend: str) -> None:
    adapter = osl.ModelAdapter(load("tiny-llama", backend))
    prov = adapter.provenance(hook_names=["hook_embed"], precision="bfloat16", seed=3, note="x")
    assert prov.model_name == "tiny-llama" and prov.backend == backend
    assert prov.weights_processed is True and prov.dtype == "float32"
    assert prov.hook_names == ("hook_embed",) and prov.extra == {"note": "x"}
    assert prov.transformer_lens_version and prov.torch_version
    assert "tiny-llama" in prov.describe()
