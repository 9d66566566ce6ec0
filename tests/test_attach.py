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
    ax = rec.result("ResidualNorms").plot()
    assert len(ax.lines) == 2
