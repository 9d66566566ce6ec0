"""attach(): analyzers on the user's own runs, whatever entry point they use."""

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _hooknames as names

from .helpers import hook_registry, leftover_hooks


def norms_from_cache(cache, points, position=-1) -> torch.Tensor:
    rows = [cache[p][:, position].double().norm(dim=-1) for p in points]
    return torch.stack(rows, dim=1)


def test_every_entry_point_is_one_run(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    clean = hook_registry(model)
    user_calls: list[int] = []
    prompts = ["1 1 1", "How many ones", "2 2"]
    with osl.attach(model, osl.ResidualNorms(include_final_norm=True)) as rec:
        model(model.to_tokens(prompts[0]))
        _, cache = model.run_with_cache(model.to_tokens(prompts[1]))
        model.run_with_hooks(
            model.to_tokens(prompts[2]),
            fwd_hooks=[(names.resid_post(0), lambda x, hook: user_calls.append(1))],
        )
    assert rec.n_runs == 3 and user_calls == [1]
    results = rec.results["ResidualNorms"]
    assert [r.tokens.shape[1] for r in results] == [4, 4, 3]
    points = [*names.residual_points(2), names.FINAL_NORM]
    torch.testing.assert_close(results[1].norms, norms_from_cache(cache, points))
    assert results[0].provenance.model_name == "tiny-llama"
    assert results[0].provenance.hook_names == tuple(points)
    assert rec.run("ResidualNorms", 1).str_tokens[1:] == ["How", " many", " ones"]
    assert leftover_hooks(model, clean) == []


def test_batch_rows_stay_apart(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    tokens = model.to_tokens(["1 1 1", "2 2 2"])
    with osl.attach(model, osl.ResidualNorms()) as rec, torch.no_grad():
        model(tokens)
        single = [model(tokens[i : i + 1]) for i in range(2)]
    assert len(single) == 2 and rec.n_runs == 3
    batch, first, second = rec.results["ResidualNorms"]
    torch.testing.assert_close(batch.norms[0], first.norms[0])
    torch.testing.assert_close(batch.norms[1], second.norms[0])
    frame = batch.to_dataframe()
    assert list(frame.columns) == ["batch", "point", "hook", "norm"] and len(frame) == 6


def test_two_analyzers_of_one_kind_get_distinct_names(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    last, first = osl.ResidualNorms(), osl.ResidualNorms(position=0)
    with osl.attach(model, last, first) as rec:
        model(model.to_tokens("1 2 3"))
    assert set(rec.results) == {"ResidualNorms", "ResidualNorms#2"}
    assert rec.result(first).position == 0 and rec.result(last).position == -1
    # position 0 is the BOS token: its residual does not depend on what follows
    with osl.attach(model, osl.ResidualNorms(position=0)) as other:
        model(model.to_tokens("4"))
    torch.testing.assert_close(other.result("ResidualNorms").norms, rec.result(first).norms)


def test_generate_makes_one_run_per_step(load, backend: str) -> None:
    from oversquash_lens._generate import greedy_continuation

    model = load("tiny-gpt2", backend)
    with osl.attach(model, osl.ResidualNorms()) as rec:
        greedy_continuation(model, model.to_tokens("1 2"), 3)
    assert rec.n_runs == 3
    assert [r.tokens.shape[1] for r in rec.results["ResidualNorms"]] == [3, 4, 5]


def test_stopped_and_failed_runs_are_refused_clearly(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    clean = hook_registry(model)
    with osl.attach(model, osl.ResidualNorms()) as rec:
        with pytest.raises(RuntimeError, match="stop"):
            model.run_with_hooks(
                model.to_tokens("1 2"),
                fwd_hooks=[(names.resid_post(0), _raise_stop)],
            )
        model(model.to_tokens("3"))
    with pytest.raises(osl.IncompatibleRunError, match="did not fire"):
        rec.result("ResidualNorms", 0)
    assert rec.result("ResidualNorms", 1).norms.shape == (1, 3)
    assert leftover_hooks(model, clean) == []


def _raise_stop(x: torch.Tensor, hook: object) -> None:
    raise RuntimeError("stop here")


def test_bad_arguments(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    with pytest.raises(TypeError, match="Analyzer"):
        with osl.attach(model, "ResidualNorms"):  # type: ignore[arg-type]
            pass
    with osl.attach(model, osl.ResidualNorms()) as rec:
        pass
    with pytest.raises(IndexError, match="no forward pass"):
        rec.result("ResidualNorms")
    with pytest.raises(KeyError, match="no analyzer"):
        rec.result("Sensitivity")
    with pytest.raises(osl.UnsupportedModelError):
        with osl.attach(torch.nn.Linear(2, 2), osl.ResidualNorms()):
            pass


def test_result_plot(load, backend: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    model = load("tiny-gpt2", backend)
    with osl.attach(model, osl.ResidualNorms()) as rec:
        model(model.to_tokens(["1 2", "3 4"]))
    ax = rec.result("ResidualNorms").plot().axes[0]
    assert len(ax.lines) == 2


def test_analyzers_see_what_the_model_used(load, backend: str) -> None:
    """Observers run last: after precision rounding and after the user's patching hooks,
    whatever order the contexts were entered in."""
    model = load("tiny-gpt2", backend)
    tokens = model.to_tokens("1 2 3")
    with osl.attach(model, osl.ResidualNorms(include_final_norm=True)) as rec, torch.no_grad():
        with osl.emulate_precision(model, "float8_e4m3"):
            model(tokens)
        doubled = (names.resid_post(0), lambda x, hook: 2 * x)
        model.run_with_hooks(tokens, fwd_hooks=[doubled])
        model(tokens)
    emulated, patched, plain = rec.results["ResidualNorms"]
    with osl.emulate_precision(model, "float8_e4m3"), osl.record(model, [names.resid_post(1)]) as a:
        with torch.no_grad():
            model(tokens)
    torch.testing.assert_close(
        emulated.norms[:, 2], a[names.resid_post(1)][:, -1].double().norm(dim=-1)
    )
    torch.testing.assert_close(patched.norms[:, 1], 2 * plain.norms[:, 1])
    assert emulated.provenance.precision == "float8_e4m3 emulated at residual"
    assert plain.provenance.precision is None


def test_provenance_follows_each_run(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    with osl.attach(model, osl.ResidualNorms()) as rec, torch.no_grad():
        model(model.to_tokens("1 2"))
        with osl.native_dtype(model, "bfloat16"):
            model(model.to_tokens("1 2"))
    first, second = rec.results["ResidualNorms"]
    assert (first.provenance.dtype, first.provenance.precision) == ("float32", None)
    assert (second.provenance.dtype, second.provenance.precision) == (
        "bfloat16",
        "bfloat16 native",
    )


def test_kept_vectors_do_not_pin_activations(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    with osl.attach(model, osl.ResidualNorms()) as rec, torch.no_grad():
        model(model.to_tokens("1 " * 200))
    kept = rec.run("ResidualNorms").activations[names.resid_pre(0)]
    assert kept.shape == (1, 64)
    assert kept.untyped_storage().nbytes() == 64 * 4  # its own storage, not [1, 201, 64]


def test_stop_and_start_at_layer_make_separate_runs(load) -> None:
    from .conftest import BACKENDS

    if "hooked" not in BACKENDS:  # start_at_layer is HookedTransformer's API
        assert BACKENDS == ("bridge",)
        return
    model = load("tiny-gpt2", "hooked")
    tokens = model.to_tokens("1 2 3")
    with osl.attach(model, osl.ResidualNorms()) as rec, torch.no_grad():
        resid = model(tokens, stop_at_layer=1)  # v(1): blocks.0 output
        model(resid, start_at_layer=1)  # no embedding: a run of its own
        model(tokens)
    assert rec.n_runs == 3
    with pytest.raises(osl.IncompatibleRunError, match="did not fire"):
        rec.result("ResidualNorms", 0)
    with pytest.raises(osl.IncompatibleRunError, match="did not fire"):
        rec.result("ResidualNorms", 1)
    assert rec.run("ResidualNorms", 1).tokens is None
    assert rec.result("ResidualNorms", 2).norms.shape == (1, 3)


def test_transformerlens_generate_with_kv_cache(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    cached = backend == "hooked"  # the bridge's own cached generate() is wrong (transformers 5)
    with osl.attach(model, osl.ResidualNorms()) as rec:
        model.generate(
            model.to_tokens("1 2"),
            max_new_tokens=3,
            do_sample=False,
            verbose=False,
            use_past_kv_cache=cached,
        )
    lengths = [r.tokens.shape[1] for r in rec.results["ResidualNorms"]]
    assert lengths == ([3, 1, 1] if cached else [3, 4, 5])


def test_user_forward_longer_than_context_is_refused(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    with pytest.raises(osl.PromptTooLongError, match="n_ctx=1024"):
        with osl.attach(model, osl.ResidualNorms()):
            model(torch.ones((1, 1025), dtype=torch.long))


class _Logits(osl.Analyzer):
    """Keeps the logits pseudo-hook and the first block's input."""

    def hook_names(self, adapter):
        return [names.LOGITS, names.resid_pre(0)]

    def compute(self, run):
        raise NotImplementedError


class _LeafInput(osl.Analyzer):
    """Makes the first block's input a leaf that requires grad (an edit hook)."""

    def __init__(self) -> None:
        self.seen_order: list[str] = []

    def edit_hooks(self, adapter):
        def make_leaf(activation, hook):
            self.seen_order.append("edit")
            return activation.detach().requires_grad_(True)

        return [(names.resid_pre(0), make_leaf)]

    def hook_names(self, adapter):
        return [names.resid_pre(0)]

    def keep(self, name, activation):
        self.seen_order.append("keep")
        return activation  # the live tensor, graph attached

    def compute(self, run):
        raise NotImplementedError


def test_logits_are_served_to_analyzers(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    tokens = model.to_tokens("1 2 3")
    before = hook_registry(model)
    with osl.attach(model, _Logits()) as rec:
        logits = model(tokens)
        model.run_with_cache(tokens)
    assert rec.n_runs == 2
    for index in range(2):
        kept = rec.run("_Logits", index).activations[names.LOGITS]
        torch.testing.assert_close(kept, logits.detach(), rtol=0, atol=0)
    assert not leftover_hooks(model, before)


def test_edit_hooks_run_before_observers_and_are_removed(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    tokens = model.to_tokens("1 2 3")
    before = hook_registry(model)
    analyzer = _LeafInput()
    with torch.no_grad():
        reference = model(tokens)
    with osl.attach(model, analyzer) as rec:
        logits = model(tokens)
    leaf = rec.run("_LeafInput").activations[names.resid_pre(0)]
    assert analyzer.seen_order == ["edit", "keep"]
    assert leaf.is_leaf and leaf.requires_grad
    (grad,) = torch.autograd.grad(logits[0, -1, 0], leaf)
    assert grad.shape == leaf.shape and grad.abs().sum() > 0
    torch.testing.assert_close(logits.detach(), reference, rtol=0, atol=0)  # value unchanged
    assert not leftover_hooks(model, before)
