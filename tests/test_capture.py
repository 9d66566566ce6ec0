"""Hook plumbing: recording, cleanup after failures, state restoration, precision hooks."""

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _hooknames as names

from .helpers import hook_registry, leftover_hooks, state_of


class Boom(RuntimeError):
    pass


def test_record_matches_run_with_cache(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    clean = hook_registry(model)
    tokens = model.to_tokens("1 2 3")
    wanted = [names.EMBED, names.resid_post(1), names.pattern(0)]
    with osl.record(model, wanted) as acts:
        model(tokens)
        model(model.to_tokens("4 4"))
    _, cache = model.run_with_cache(tokens)
    for name in wanted:
        first = acts.all(name)[0]
        assert not first.requires_grad and first.device.type == "cpu"
        torch.testing.assert_close(first, cache[name])
        assert len(acts.all(name)) == 2
    assert acts[names.EMBED].shape[1] == 3  # the latest run: BOS + "4 4"
    assert leftover_hooks(model, clean) == []


def test_record_select_and_keep_device(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    with osl.record(model, [names.FINAL_NORM], select=lambda n, x: x[:, -1], device=None) as a:
        model(model.to_tokens("1 2 3"))
    assert a[names.FINAL_NORM].shape == (1, 64)
    with pytest.raises(KeyError, match="did not fire"):
        a[names.resid_pre(0)]


def test_user_hooks_survive_and_ours_leave(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    clean = hook_registry(model)
    calls: list[str] = []
    user_hook = ("blocks.0.hook_resid_post", lambda x, hook: calls.append("user"))
    model.add_hook(*user_hook)
    try:
        with osl.record(model, ["blocks.0.hook_resid_post"]) as acts:
            model.run_with_hooks(
                model.to_tokens("1"),
                fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: calls.append("inner"))],
            )
            model.reset_hooks()  # a user's reset inside the block must not drop ours...
            model(model.to_tokens("2"))
        assert len(acts.all("blocks.0.hook_resid_post")) == 2
        assert calls == ["user", "inner"]  # ...though it removed the user's own hook
        assert leftover_hooks(model, clean) == []  # the user's reset removed their hook
    finally:
        model.reset_hooks()


def test_failing_run_leaves_no_hooks_and_restores_state(backend: str) -> None:
    """Every context at once, a hook that raises mid-forward: nothing may stay behind."""
    model = osl.load_model("tiny-llama", backend=backend)
    model.eval()
    before = state_of(model)
    clean = hook_registry(model)

    def explode(x: torch.Tensor, hook: object) -> None:
        raise Boom("hook failed mid-forward")

    with pytest.raises(Boom):
        with (
            osl.preserve_state(model),
            osl.native_dtype(model, "bfloat16"),
            osl.emulate_precision(model, "bfloat16", points="residual+attention"),
            osl.attach(model, osl.ResidualNorms()),
            osl.record(model, [names.resid_post(0)]),
            osl.intervene(model, [(names.resid_post(1), explode)]),
        ):
            model.train()
            torch.set_grad_enabled(False)
            for p in model.parameters():
                p.requires_grad_(False)
            model(model.to_tokens("1 1 1"))
    assert torch.is_grad_enabled()
    assert leftover_hooks(model, clean) == []
    assert state_of(model) == before
    with torch.no_grad():  # and the model still works, in float32
        assert model(model.to_tokens("1 1")).dtype == torch.float32


def test_native_dtype_restores_bit_identical_weights(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    tokens = model.to_tokens("1 2 3 4")
    with torch.no_grad():
        reference = model(tokens)
        with osl.native_dtype(model, "bfloat16"):
            low = model(tokens)
        again = model(tokens)
    assert low.dtype == torch.bfloat16
    assert torch.equal(again, reference)
    with pytest.raises(osl.UnsupportedPrecisionError, match="emulate_precision"):
        with osl.native_dtype(model, "float8_e4m3"):
            pass


@pytest.mark.parametrize("fmt", ["bfloat16", "float8_e4m3", "e5m3"])
def test_emulate_precision_rounds_the_residual_stream(load, backend: str, fmt: str) -> None:
    model = load("tiny-gpt2", backend)
    clean = hook_registry(model)
    stream = names.residual_stream(2)
    with osl.emulate_precision(model, fmt), osl.record(model, [*stream, names.z(0)]) as acts:
        with torch.no_grad():
            model(model.to_tokens("1 2 3"))
    for name in stream:
        x = acts[name]
        assert torch.equal(osl.round_to_format(x, fmt), x), name
    z = acts[names.z(0)]  # not rounded unless asked for
    assert not torch.equal(osl.round_to_format(z, fmt), z)
    assert leftover_hooks(model, clean) == []


def test_emulate_precision_attention_and_explicit_points(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    with (
        osl.emulate_precision(model, "bfloat16", points="residual+attention"),
        osl.record(model, [names.z(0)]) as acts,
        torch.no_grad(),
    ):
        model(model.to_tokens("1 2 3"))
    assert torch.equal(acts[names.z(0)], acts[names.z(0)].bfloat16().float())
    with pytest.raises(ValueError, match="points"):
        osl.emulate_precision(model, "bfloat16", points="everything").__enter__()  # type: ignore[arg-type]
    with pytest.raises(osl.UnknownPrecisionError):
        osl.emulate_precision(model, "bf17").__enter__()


def test_emulated_bfloat16_is_close_to_native(load, backend: str) -> None:
    """Emulating bf16 on the residual stream lands near a real bf16 run (not equal: native
    bf16 also rounds weights and every intermediate)."""
    model = load("tiny-gpt2", backend)
    tokens = model.to_tokens("1 2 3 4 5 6")
    with torch.no_grad():
        exact = model(tokens)
        with osl.emulate_precision(model, "bfloat16"):
            emulated = model(tokens)
        with osl.native_dtype(model, "bfloat16"):
            native = model(tokens).float()
    assert not torch.equal(emulated, exact)
    err_emulated = (emulated - exact).abs().max()
    err_native = (native - exact).abs().max()
    assert 0 < err_emulated <= err_native * 4


def test_casts_inside_any_context_are_undone(load, backend: str) -> None:
    model = osl.load_model("tiny-gpt2", backend=backend)
    before = state_of(model)
    with osl.record(model, [names.resid_post(1)]):
        model.to(torch.bfloat16)  # a user's cast inside the block
        model.train()
    assert state_of(model) == before


def test_native_dtype_failing_half_way_is_restored(backend: str, monkeypatch) -> None:
    from oversquash_lens import _tensors
    from oversquash_lens.capture import _precision

    model = osl.load_model("tiny-llama", backend=backend)
    before = state_of(model)
    tensors = _tensors.floating_tensors(model)

    def cast_half_then_fail(m, dtype, keep=()):
        for t in tensors[: len(tensors) // 2]:
            t.data = t.data.to(dtype)
        raise MemoryError("out of memory half way")

    monkeypatch.setattr(_precision, "cast_floating_", cast_half_then_fail)
    with pytest.raises(MemoryError):
        with osl.native_dtype(model, "bfloat16"):
            pass
    assert state_of(model) == before


def test_backward_hooks_see_gradients_and_are_removed(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    clean = hook_registry(model)
    grads: list[torch.Tensor] = []
    with osl.capture.hooks(
        model, bwd_hooks=[(names.resid_post(0), lambda g, hook: grads.append(g))]
    ):
        logits = model(model.to_tokens("1 2 3"))
        logits[0, -1, 5].backward()
    assert len(grads) == 1 and grads[0].shape == (1, 4, 64)
    assert grads[0][0, :-1].abs().sum() > 0  # earlier positions influence the last logit
    model.zero_grad(set_to_none=True)
    assert leftover_hooks(model, clean) == []
