"""Property-based checks over the public functions' argument space (run by test_properties).

Hypothesis draws models of both backends, token tensors of random shape, dtype and range,
prompts (strings, lists of strings, ragged or not), lengths, precisions, probes,
positions, layers, heads and methods, and calls the public functions with them. Every
call must either succeed, or raise one of the package's errors, a ``ValueError`` or a
``TypeError`` with a message, raised by the package itself: never an ``IndexError``,
``AttributeError``, ``AssertionError`` or any error from inside torch or TransformerLens.
Afterwards no hook, dtype, mode, grad flag or weight of the model may have changed.

This file is run in a subprocess without the test session's runtime type checking
(jaxtyping + beartype would answer a wrongly typed argument before the package's own
checks do), so it sees what a user sees.
"""

import traceback
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oversquash_lens as osl
from oversquash_lens import capture
from oversquash_lens._compat import available_backends
from oversquash_lens._tensors import weights_digest

PACKAGE = Path(osl.__file__).parent
MODELS = [
    (name, backend) for backend in available_backends() for name in ("tiny-gpt2", "tiny-llama")
]
_LOADED: dict[tuple[str, str], Any] = {}
CHECKS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI never flakes on a new draw
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def model_of(key: tuple[str, str]) -> Any:
    if key not in _LOADED:
        _LOADED[key] = osl.load_model(key[0], backend=key[1])
    return _LOADED[key]


def state(model: Any) -> Any:
    hooks = {
        name: (
            tuple(m._forward_pre_hooks),
            tuple(m._forward_hooks),
            tuple(m._backward_hooks),
            tuple(id(h) for h in getattr(m, "fwd_hooks", ())),
            tuple(id(h) for h in getattr(m, "bwd_hooks", ())),
        )
        for name, m in model.named_modules()
    }
    return (
        hooks,
        weights_digest(model),
        {n: m.training for n, m in model.named_modules()},
        {n: p.requires_grad for n, p in model.named_parameters()},
        torch.is_grad_enabled(),
        getattr(model.cfg, "dtype", None),
        capture.active_precision(model),
    )


def check_call(model: Any, call: Any) -> None:
    """``call()`` succeeds or fails clearly, and leaves the model exactly as it was."""
    with torch.no_grad():  # the bridge's first pass adds hooks of its own: warm it up
        model(torch.zeros((1, 2), dtype=torch.long, device=model.W_E.device))
    before = state(model)
    try:
        call()
    except (osl.OversquashLensError, ValueError, TypeError) as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1].filename
        assert not isinstance(exc, IndexError | AttributeError | AssertionError), repr(exc)
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        assert Path(where).is_relative_to(PACKAGE), f"raised inside {where}: {exc!r}"
    after = state(model)
    assert after == before, "the call changed the model's hooks, weights or state"


# ---------------------------------------------------------------- strategies
models = st.sampled_from(MODELS)
DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool, torch.float32]


@st.composite
def token_tensors(draw: Any) -> torch.Tensor:
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0, 3 if i < ndim - 1 else 7)) for i in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    low, high = draw(st.sampled_from([(0, 600), (-5, 5), (590, 610)]))
    values = torch.randint(low, high, shape, generator=torch.Generator().manual_seed(0))
    return values.to(dtype)


texts = st.sampled_from(["", "1", "1 1 1", "1 0 1 1", "How many? 1 1", "<|x|> 1"])
prompts = st.one_of(
    token_tensors(),
    texts,
    st.lists(texts, min_size=0, max_size=3),
    st.sampled_from([None, 3, 2.5, b"1 1"]),
)
ints_or_junk = st.one_of(
    st.integers(-12, 12), st.sampled_from([2.5, True, "3", None, [1], float("nan")])
)
layer_specs = st.one_of(
    st.sampled_from(["all", "final", "first", [], ["final"], [0, "final"], [5], [0, 0]]),
    st.lists(ints_or_junk, max_size=3),
)
lengths = st.one_of(
    st.lists(st.integers(-1, 6), max_size=4),
    st.sampled_from([None, "123", [1.5, 2.7], [True], range(1, 4), (3,), 4]),
)
precisions = st.lists(
    st.sampled_from(
        ["float32", "bfloat16", "float16", "emulate:bfloat16", "emulate:float64",
         "float8_e4m3", "emulate:e5m3", "bogus", "emulate:", 7]
    ),
    max_size=3,
)  # fmt: skip
heads = st.sampled_from([True, False, 0, -1, 5, [0, 1], [9], "all", 1.5])


# ---------------------------------------------------------------- properties
@CHECKS
@given(models, prompts, st.sampled_from(["bound", "rollout", "context", "x"]),
       st.sampled_from(["mean", "max", "each", "x", [1.0, 0.0, 1.0, 1.0], [-1.0]]),
       st.one_of(st.floats(-1, 3), st.sampled_from([[1.0, 1.0], "1"])))  # fmt: skip
def test_attention_paths(key, prompt, method, head_spec, beta) -> None:
    model = model_of(key)
    check_call(
        model,
        lambda: osl.attention_paths(model, prompt, method=method, heads=head_spec, beta1=beta),
    )


@CHECKS
@given(models, prompts, st.sampled_from(["exact", "hutchinson", "power", "x"]),
       ints_or_junk, ints_or_junk, layer_specs, st.sampled_from(["fro", "spectral", "x"]),
       st.sampled_from(["resid_pre0", "embed", "x"]))  # fmt: skip
def test_sensitivity(key, prompt, method, probes, position, layers, norm, wrt) -> None:
    model = model_of(key)

    def call() -> None:
        osl.sensitivity(
            model, prompt, method=method, probes=probes, position=position, layers=layers,
            norm=norm, wrt=wrt, iterations=3,
        )  # fmt: skip

    check_call(model, call)


@CHECKS
@given(models, prompts, st.sampled_from(["exact", "hutchinson", "x"]), ints_or_junk,
       layer_specs, st.sampled_from(["bound", "rollout", "x"]))  # fmt: skip
def test_trace(key, prompt, method, probes, layers, path_method) -> None:
    model = model_of(key)
    check_call(
        model,
        lambda: osl.trace(
            model, prompt, method=method, probes=probes, layers=layers, path_method=path_method
        ),
    )


@CHECKS
@given(models, st.sampled_from(["ones", "separated", "pair-text", "pair-ids", "bad-ids"]),
       lengths, precisions, st.sampled_from(["shared", "independent", "x"]), heads)  # fmt: skip
def test_collapse(key, family_name, ks, specs, mode, head_spec) -> None:
    model = model_of(key)
    family = {
        "ones": osl.tasks.repeated_last("1"),
        "separated": osl.tasks.separated("1", every=2),
        "pair-text": osl.tasks.pair("10", "110"),
        "pair-ids": osl.tasks.pair([5, 6, 7], [5, 6, 7, 7]),
        "bad-ids": osl.tasks.pair([5, 6, 7], [5, 6, 10**6]),
    }[family_name]
    check_call(
        model,
        lambda: osl.collapse(model, family, ks, specs, mode=mode, heads=head_spec, progress=False),
    )


@CHECKS
@given(models, st.sampled_from(["count_ones", "copy_last", "copy_first"]), lengths,
       ints_or_junk, ints_or_junk)  # fmt: skip
def test_behaviour(key, task_name, ks, samples, new_tokens) -> None:
    model = model_of(key)
    task = osl.tasks.TASKS[task_name]().replace(style="compact")
    check_call(
        model,
        lambda: osl.behaviour(
            model, task, ks, samples=samples, max_new_tokens=new_tokens, progress=False
        ),
    )


@CHECKS
@given(models, token_tensors(), st.lists(
    st.sampled_from(["hook_embed", "blocks.0.hook_resid_post", "blocks.9.hook_z", "logits", ""]),
    max_size=3), st.sampled_from(["bfloat16", "float16", "float64", "e5m2", "x", 3]))  # fmt: skip
def test_capture_contexts(key, tokens, names, fmt) -> None:
    """The contexts with arbitrary arguments around a valid pass; ``attach`` also sees
    arbitrary ``[batch, pos]`` ids in the user's own call (its hooks check them)."""
    model = model_of(key)
    good = model.to_tokens("1 1")

    def run_inside(context: Any, ids: torch.Tensor) -> None:
        with context, torch.no_grad():
            model(ids)

    check_call(model, lambda: run_inside(osl.record(model, names), good))
    check_call(model, lambda: run_inside(osl.emulate_precision(model, fmt), good))
    check_call(model, lambda: run_inside(osl.native_dtype(model, fmt), good))
    if tokens.ndim == 2 and tokens.dtype == torch.int64 and tokens.numel():
        probes = osl.attach(model, osl.ResidualNorms(), osl.CollapseProbe())
        check_call(model, lambda: run_inside(probes, tokens))
