"""AttentionPaths on real (tiny) models: streamed results vs a dense reference built from
``run_with_cache`` patterns, runs and batch rows, hook hygiene, refusals, results API,
and peak memory against the one-layer bound."""

from pathlib import Path
from typing import Any

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _hooknames as names
from oversquash_lens._paths import attention_paths
from oversquash_lens.analyzers._path_math import transition_coefficients
from oversquash_lens.analyzers._path_result import PathResult
from oversquash_lens.analyzers._paths import AttentionPaths

from .conftest import BACKENDS, TINY_MODELS
from .helpers import TensorBytesPeak, assert_close, hook_registry, leftover_hooks

F64 = torch.float64
METHODS = ("bound", "rollout", "context")


def is_pattern(name: str) -> bool:
    return name.endswith("hook_pattern")


def reference(patterns, method, heads="mean", beta1=1.0, scale=None):
    """Dense float64 products of full per-layer transition matrices (the slow way)."""
    batch, n_heads, n, _ = patterns[0].shape
    eye = torch.eye(n, dtype=F64)
    product = eye.expand(batch, n, n)
    weights, per_head = [], []
    for layer, pattern in enumerate(patterns):
        pattern = pattern.to(F64)
        if scale is not None:
            lam = torch.einsum("bhqk,h->bqk", pattern, scale[layer])
        else:
            lam = pattern.amax(1) if heads == "max" else pattern.mean(1)
        a, b = transition_coefficients(method, beta1)
        per_head.append((a * pattern + b * eye)[:, :, -1:, :] @ product[:, None])
        product = (a * lam + b * eye) @ product
        weights.append(product[:, -1])
    return torch.stack(weights, 1), torch.cat(per_head, 2).squeeze(2).transpose(1, 2)


def test_streamed_paths_match_dense_reference(load, backend: str) -> None:
    """Every tiny architecture (GQA in tiny-llama), every method and head reduction."""
    gen = torch.Generator().manual_seed(0)
    for name in TINY_MODELS:
        model = load(name, backend)
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        scale = torch.rand(n_layers, n_heads, generator=gen, dtype=F64)
        analyzers = {
            (method, heads): AttentionPaths(method=method, heads=heads, beta1=0.7)
            for method in METHODS
            for heads in ("mean", "max", "each")
        }
        analyzers["bound", "weighted"] = AttentionPaths(heads=scale, beta1=0.7)
        tokens = torch.randint(1, 200, (2, 9), generator=gen)
        with osl.attach(model, *analyzers.values()) as rec, torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=is_pattern)
        patterns = [cache[names.pattern(layer)] for layer in range(n_layers)]
        for (method, heads), analyzer in analyzers.items():
            result = rec.result(analyzer)
            assert isinstance(result, PathResult)
            expected, per_head = reference(
                patterns, method, heads, 0.7, scale if heads == "weighted" else None
            )
            assert result.weights.shape == (2, n_layers, 9)
            # float64 throughout; only summation order differs from the dense reference
            assert_close(result.weights, expected)
            if heads == "each":
                assert result.head_weights is not None
                assert result.head_weights.shape == (2, n_layers, n_heads, 9)
                assert_close(result.head_weights, per_head)
            assert result.tokens is not None and torch.equal(result.tokens, tokens)
        rollout = rec.result(analyzers["rollout", "mean"])
        # the model's float32 softmax rows sum to 1 only to float32 rounding
        ones = torch.ones(2, n_layers, dtype=F64)
        assert_close(rollout.weights.sum(-1), ones, dtype=torch.float32)


def test_bfloat16_patterns_are_reduced_in_float64(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    tokens = model.to_tokens("1 2 3 4 5")
    with osl.native_dtype(model, "bfloat16"), torch.no_grad():
        with osl.attach(model, AttentionPaths(method="rollout")) as rec:
            _, cache = model.run_with_cache(tokens, names_filter=is_pattern)
    patterns = [cache[names.pattern(layer)] for layer in range(2)]
    assert patterns[0].dtype == torch.bfloat16
    result = rec.result("AttentionPaths")
    assert result.provenance.dtype == "bfloat16"
    assert_close(result.weights, reference(patterns, "rollout")[0])


def test_functional_form_is_the_attached_analyzer(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    clean = hook_registry(model)
    text = "Count the ones: 1 1 1 1 1"
    result = attention_paths(model, text, method="rollout", heads="each")
    assert leftover_hooks(model, clean) == []
    tokens = model.to_tokens(text)
    with osl.attach(model, AttentionPaths(method="rollout", heads="each")) as rec:
        model(tokens)
    assert_close(result.weights, rec.result("AttentionPaths").weights)
    again = attention_paths(model, tokens[0], method="rollout", heads="each")
    assert torch.equal(again.weights, result.weights)
    assert result.str_tokens == tuple(model.to_str_tokens(tokens[0]))
    no_bos = attention_paths(model, text, method="rollout", prepend_bos=False)
    assert no_bos.n_positions == result.n_positions - 1


def test_runs_and_batch_rows_stay_apart(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    tokens = torch.tensor([[1, 20, 21, 22, 23], [1, 40, 41, 42, 43]])
    user_calls: list[int] = []
    with osl.attach(model, AttentionPaths(heads="each")) as rec, torch.no_grad():
        model(tokens)
        model(tokens[:1])
        model.run_with_hooks(
            tokens[1:],
            fwd_hooks=[(names.pattern(1), lambda x, hook: user_calls.append(x.shape[-1]))],
        )
    assert rec.n_runs == 3 and user_calls == [5]
    both, first, second = rec.results["AttentionPaths"]
    # the model's float32 kernels round differently for a batch of 2 and of 1
    assert_close(both.weights[0], first.weights[0], dtype=torch.float32)
    assert_close(both.weights[1], second.weights[0], dtype=torch.float32)
    assert_close(both.head_weights[1], second.head_weights[0], dtype=torch.float32)
    assert not torch.allclose(both.weights[0], both.weights[1])


def test_hooks_removed_after_exceptions(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    clean = hook_registry(model)
    with pytest.raises(ZeroDivisionError):
        with osl.attach(model, AttentionPaths()), torch.no_grad():
            model(model.to_tokens("1 2 3"))
            1 / 0  # noqa: B018
    assert leftover_hooks(model, clean) == []
    with pytest.raises(RuntimeError, match="user hook"):
        with osl.attach(model, AttentionPaths()), torch.no_grad():
            model.run_with_hooks(
                model.to_tokens("1 2"), fwd_hooks=[(names.pattern(1), _raise_in_hook)]
            )
    assert leftover_hooks(model, clean) == []


def _raise_in_hook(x: torch.Tensor, hook: object) -> None:
    raise RuntimeError("user hook failed")


def test_runs_that_cannot_serve_paths_are_refused(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    paths = AttentionPaths()
    with osl.attach(model, paths) as rec, torch.no_grad():
        with pytest.raises(RuntimeError, match="user hook"):
            model.run_with_hooks(
                model.to_tokens("1 2"), fwd_hooks=[(names.resid_post(0), _raise_in_hook)]
            )
        with pytest.raises(RuntimeError, match="user hook"):
            model.run_with_hooks(
                model.to_tokens("1 2"), fwd_hooks=[("blocks.0.attn.hook_q", _raise_in_hook)]
            )
        model(model.to_tokens("3 4"))
    assert rec.n_runs == 3
    with pytest.raises(osl.IncompatibleRunError, match=r"layers \[1\] did not fire"):
        rec.result(paths, 0)
    with pytest.raises(osl.IncompatibleRunError, match="eager"):
        rec.result(paths, 1)
    assert rec.result(paths, 2).weights.shape == (1, 2, 3)  # later runs are unaffected


def test_kv_cached_generation_steps_are_refused(load) -> None:
    if "hooked" not in BACKENDS:  # the bridge's own cached generate() is wrong (transformers 5)
        assert BACKENDS == ("bridge",)
        return
    model = load("tiny-gpt2", "hooked")
    with osl.attach(model, AttentionPaths()) as rec:
        model.generate(model.to_tokens("1 2"), max_new_tokens=2, do_sample=False, verbose=False)
    assert rec.n_runs == 2
    assert rec.result("AttentionPaths", 0).n_positions == 3
    with pytest.raises(osl.IncompatibleRunError, match="use_past_kv_cache=False"):
        rec.result("AttentionPaths", 1)


def test_one_object_attached_twice_gives_the_same_result(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    paths = AttentionPaths(heads="each")
    with osl.attach(model, paths, paths) as rec, torch.no_grad():
        model(model.to_tokens("1 2 3"))
    once = attention_paths(model, "1 2 3", heads="each")
    for key in ("AttentionPaths", "AttentionPaths#2"):
        assert torch.equal(rec.result(key).weights, once.weights)
        assert torch.equal(rec.result(key).head_weights, once.head_weights)


def test_layers_out_of_order_are_refused(load, backend: str) -> None:
    """A pattern that cannot extend the running product marks the run, never raises in
    the user's forward pass."""
    model = load("tiny-gpt2", backend)
    paths = AttentionPaths()
    with osl.attach(model, paths) as rec, torch.no_grad():
        model(model.to_tokens("1 2"))
    record = rec.run("AttentionPaths")
    second = names.pattern(1)
    record.activations[second] = paths.keep(second, torch.full((1, 4, 3, 3), 1 / 3))
    with pytest.raises(osl.IncompatibleRunError, match="out of layer order"):
        paths.compute(record)


def test_bad_arguments_are_refused_clearly(load, backend: str) -> None:
    model = load("tiny-llama", backend)  # 2 layers, 4 query heads, 2 key/value heads
    with pytest.raises(ValueError, match=r"\[4\] or \[2, 4\] \(one per query head\)"):
        with osl.attach(model, AttentionPaths(heads=torch.ones(2, 2))):
            pass
    with pytest.raises(ValueError, match="beta1 has 3 entries but the model has 2 layers"):
        with osl.attach(model, AttentionPaths(beta1=[1.0, 1.0, 1.0])):
            pass
    with pytest.raises(ValueError, match="non-negative"):
        AttentionPaths(heads=[1.0, -1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="unknown path method"):
        AttentionPaths(method="maxflow")
    with pytest.raises(ValueError, match="heads must be one of"):
        AttentionPaths(heads="min")
    with pytest.raises(ValueError, match="beta3 must be positive"):
        AttentionPaths(beta3=0.0)
    with pytest.raises(osl.EmptySequenceError):
        attention_paths(model, "")


def test_bound_constant_and_per_layer_betas(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    tokens = model.to_tokens("1 1 1 1")
    result = attention_paths(model, tokens, beta1=[2.0, 0.25], beta2=[4.0, 1.0], sigma_psi=2.0)
    assert_close(result.constant, torch.tensor([1.5, 4.5], dtype=F64))
    assert result.beta1 == (2.0, 0.25) and result.beta2 == (4.0, 1.0)
    assert_close(result.sensitivity_bound, result.weights * torch.tensor([1.5, 4.5])[:, None])
    # rows of Λ/β1 + I sum to 1/β1 + 1, so each layer multiplies the total by that
    # (to float32 rounding: the model's softmax rows sum to 1 in float32)
    sums = torch.tensor([1.5, 1.5 * 5.0], dtype=F64)
    assert_close(result.weights[0].sum(-1), sums, dtype=torch.float32)
    rollout = attention_paths(model, tokens, method="rollout")
    assert rollout.constant is None and rollout.beta1 == ()
    with pytest.raises(ValueError, match="method='bound'"):
        _ = rollout.sensitivity_bound


def test_result_round_trip_tables_and_plots(tmp_path: Path, load, backend: str) -> None:
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    model = load("tiny-llama", backend)
    result = attention_paths(model, model.to_tokens(["1 2 3 4", "5 6 7 8"]), heads="each")
    path = result.save(tmp_path / "paths")
    again = PathResult.load(path)
    fields = ("weights", "uniform", "head_weights", "constant", "tokens", "rounding_relative")
    for field in (*fields, "rounding_absolute"):
        assert torch.equal(getattr(again, field), getattr(result, field)), field
    assert again.product_dtype == "float64"
    assert again.str_tokens == result.str_tokens and again.beta1 == result.beta1
    assert again.provenance == result.provenance and again.heads == "each"
    assert again.to_dataframe().equals(result.to_dataframe())

    frame = result.to_dataframe()
    assert len(frame) == 2 * 2 * 5
    assert list(frame.columns) == [
        "batch", "layer", "position", "token_id", "token", "weight", "uniform", "attenuation",
    ]  # fmt: skip
    row = frame[(frame.batch == 1) & (frame.layer == 1) & (frame.position == 2)].iloc[0]
    assert row.weight == result.weights[1, 1, 2].item() and pd.isna(row.token)
    assert row.attenuation == pytest.approx(result.attenuation[1, 1, 2].item())
    assert frame.token.iloc[1] == result.str_tokens[1]
    assert len(result.to_dataframe(per_head=True)) == 2 * 2 * 4 * 5

    summary = result.summary()
    assert len(summary) == 4 and set(summary.argmin) <= set(range(5))
    shares = summary[["early", "middle", "late"]].sum(axis=1)
    assert_close(torch.tensor(shares.to_numpy()), torch.ones(4, dtype=F64))
    assert summary.first.iloc[3] == pytest.approx(
        (result.weights[1, 1, 0] / result.weights[1, 1].sum()).item()
    )

    ax = result.plot().axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 4  # two layers + uniform references
    heat = result.plot(kind="heatmap", relative=True, batch=1).axes[0]
    assert heat.images[0].get_array().shape == (2, 5)
    rollout = attention_paths(model, "1 2", method="rollout")
    with pytest.raises(ValueError, match="heads='each'"):
        rollout.to_dataframe(per_head=True)


# ---------------------------------------------------------------- product dtype
def test_auto_product_dtype_is_float64_then_float32_within_its_bound(
    load, backend: str, monkeypatch
) -> None:
    from oversquash_lens.analyzers import _path_math

    model = load("tiny-llama", backend)
    tokens = model.to_tokens(["1 2 3 4 5 6", "7 8 9 1 2 3"])
    auto = attention_paths(model, tokens)
    exact = attention_paths(model, tokens, product_dtype="float64")
    assert auto.product_dtype == "float64" and torch.equal(auto.weights, exact.weights)
    monkeypatch.setattr(_path_math, "FLOAT32_FROM", tokens.shape[-1])  # auto's switch point
    switched = attention_paths(model, tokens)
    low = attention_paths(model, tokens, product_dtype="float32")
    assert switched.product_dtype == "float32" and torch.equal(switched.weights, low.weights)
    error = (low.weights - exact.weights).abs()
    assert bool((error <= low.rounding_error + exact.rounding_error).all())
    assert float(error.max()) > 0
    assert "float32 product" in low.headline()
    each = attention_paths(model, tokens, heads="each")  # per-head rows keep float64
    assert each.product_dtype == "float64"
    with pytest.raises(ValueError, match="no rounding bound"):
        _ = attention_paths(model, tokens, method="value").rounding_error


def test_unsafe_float32_products_are_refused_before_the_pass(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    for kwargs in ({"heads": "each"}, {"method": "value"}, {"method": "certified"}):
        with pytest.raises(ValueError, match="applies to the running product"):
            AttentionPaths(product_dtype="float32", **kwargs)
    with pytest.raises(ValueError, match="product_dtype must be one of"):
        AttentionPaths(product_dtype="bfloat16")
    before = hook_registry(model)
    calls = []
    handle = model.blocks[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(ValueError, match="grow past float32's range"):
            attention_paths(model, "1 2 3", beta1=1e-20, product_dtype="float32")
        torch.set_float32_matmul_precision("medium")
        try:
            with pytest.raises(ValueError, match="TF32 or bfloat16"):
                attention_paths(model, "1 2 3", product_dtype="float32")
        finally:
            torch.set_float32_matmul_precision("highest")
    finally:
        handle.remove()
    assert calls == [] and leftover_hooks(model, before) == []  # refused before any work


# ---------------------------------------------------------------- peak memory
def deep_model(backend: str):
    """8 layers × 8 heads: at n = 512 one layer's patterns take 8 MiB, all layers 64."""
    from transformers import AutoModelForCausalLM

    from oversquash_lens.models._build import Source, build_bridge, build_hooked
    from oversquash_lens.models._tiny import TinySpec, _hf_config, tiny_tokenizer

    spec = TinySpec("gpt2", "deep", n_layers=8, n_heads=8, d_model=64, d_mlp=64)
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hf_model = AutoModelForCausalLM.from_config(
            _hf_config(spec, len(tokenizer), tokenizer), attn_implementation="eager"
        )
    src = Source("paths-memory", hf_model.eval(), tokenizer, True, "random init, seed 0")
    build = build_hooked if backend == "hooked" else build_bridge
    return build(src, processed=True, dtype=torch.float32, device="cpu")


def peak(run: Any) -> int:
    """Peak bytes of the tensor storages ``run()`` creates (see TensorBytesPeak)."""
    with torch.no_grad(), TensorBytesPeak() as meter:
        run()
    return meter.peak


@pytest.mark.slow
def test_peak_memory_stays_within_one_layer(backend: str) -> None:
    """Peak tensor memory of a forward pass with AttentionPaths attached exceeds the plain
    forward pass's peak by less than 2× one layer's pattern stack [H, n, n], while keeping
    a copy of every layer's patterns costs the whole L×H×n×n stack: the meter sees the
    difference it is meant to bound.

    (The GPT-2-layout TransformerBridge on TL 3.9 itself keeps each layer's last pattern
    on its attention modules, so there the stack is already inside the plain pass's peak;
    the bound on what the analyzer adds holds on both backends.)
    """
    model = deep_model(backend)
    n = 512
    tokens = torch.randint(1, 200, (1, n), generator=torch.Generator().manual_seed(0))
    layer_bytes = 8 * n * n * 4  # float32 patterns of one layer
    stack_bytes = 8 * layer_bytes

    def plain() -> None:
        model(tokens, return_type=None)

    def with_paths() -> None:
        with osl.attach(model, AttentionPaths(heads="each")) as rec:
            model(tokens, return_type=None)
        assert rec.result("AttentionPaths").weights.shape == (1, 8, n)

    def with_copies() -> None:
        copies: list[torch.Tensor] = []
        keep = (is_pattern, lambda x, hook: copies.append(x.clone()))
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=[keep])
        assert len(copies) == 8

    peak(plain)  # warm-up: lazily built buffers (masks, rotary tables) are not ours
    base = peak(plain)
    extra_paths = peak(with_paths) - base
    extra_copies = peak(with_copies) - base
    # the copies of layers 0..L-2 sit on top of the last layer's own transient peak
    assert extra_copies >= stack_bytes - layer_bytes, (extra_copies, stack_bytes)
    assert extra_paths < 2 * layer_bytes, (extra_paths, layer_bytes)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["value", "certified"])
def test_new_path_methods_stay_below_one_layers_pattern_stack(backend: str, method: str) -> None:
    """value and certified read more hook points, but what they add to the forward pass's
    peak stays below one layer's pattern stack [H, n, n] (no L×H×n×n stack, no stacked
    weights)."""
    model = deep_model(backend)
    n = 512
    tokens = torch.randint(1, 200, (1, n), generator=torch.Generator().manual_seed(0))
    layer_bytes = 8 * n * n * 4

    def plain() -> None:
        model(tokens, return_type=None)

    def with_paths() -> None:
        attention_paths(model, tokens, method=method)

    with_paths()  # warm-up: probe passes and cached weight constants are not per run
    peak(plain)
    base = peak(plain)
    extra = peak(with_paths) - base
    assert extra < layer_bytes, (extra, layer_bytes)
