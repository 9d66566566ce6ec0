"""osl.behaviour and BehaviourResult: rows, tables, N*, checkpoints, save/load, hygiene."""

import json
import math

import matplotlib
import numpy as np
import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _behaviour, tasks
from oversquash_lens._behaviour import behaviour
from oversquash_lens._behaviour_result import BehaviourResult, failure_length
from oversquash_lens._errors import EmptySequenceError
from oversquash_lens._generate import greedy_continuation
from oversquash_lens.results import Provenance

from .conftest import BACKENDS
from .helpers import hook_registry, leftover_hooks, state_of

matplotlib.use("Agg")


class Interrupted(Exception):
    """Stands in for Ctrl-C (pytest treats a real KeyboardInterrupt as ending the session)."""


PROV = Provenance("m", "hooked", None, "float32", "cpu", "eager", None, "test")


def make(rows: list[dict]) -> BehaviourResult:
    return BehaviourResult.from_rows(
        rows,
        task="count_ones",
        task_description="count_ones (test)",
        max_new_tokens=5,
        chat=None,
        prepend_bos=None,
        provenance=PROV,
    )


def row(k: int, sample: int, parsed: int | None, value: int | None = None) -> dict:
    value = k if value is None else value
    return {
        "task": "count_ones",
        "k": k,
        "sample": sample,
        "n_prompt_tokens": k + 3,
        "output": "" if parsed is None else f"{parsed}\n",
        "parsed": parsed,
        "answer": str(value),
        "correct": parsed == value,
        "abs_error": None if parsed is None else float(abs(parsed - value)),
    }


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("accuracies", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], None),
        ([0.0, 0.0, 0.0, 0.0], 5),
        ([1.0, 0.2, 0.8, 0.1], 40),  # recovers at 20, so N* is where it stops recovering
        ([1.0, 0.5, 0.4, 0.0], 20),  # 0.5 is not below the threshold
        ([1.0, math.nan, 0.0, 0.0], 10),  # NaN: nothing right
        ([0.0, 0.0, 0.0, 1.0], None),
    ],
)
def test_failure_length_table(accuracies, expected) -> None:
    assert failure_length([5, 10, 20, 40], accuracies) == expected


def test_failure_length_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        acc = (torch.rand(6, generator=gen) > 0.5).double().tolist()
        ks = [1, 2, 3, 5, 8, 13]
        brute = next(
            (k for i, k in enumerate(ks) if all(a < 0.5 for a in acc[i:])),
            None,
        )
        assert failure_length(ks, acc) == brute


def test_failure_length_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="increase"):
        failure_length([5, 3], [1.0, 0.0])
    with pytest.raises(ValueError, match="accuracies"):
        failure_length([5], [1.0, 0.0])


def test_tables_by_hand() -> None:
    rows = [row(3, 0, 3), row(3, 1, 5), row(3, 2, None), row(3, 3, 3)]
    rows += [row(7, 0, 5), row(7, 1, 6), row(7, 2, 5), row(7, 3, None)]
    result = make(rows)
    table = result.accuracy()
    assert table["k"].tolist() == [3, 7] and table["n"].tolist() == [4, 4]
    assert table["accuracy"].tolist() == [0.5, 0.0]
    assert table["mean_abs_error"].tolist() == pytest.approx([2 / 3, 5 / 3])
    assert table["median_abs_error"].tolist() == [0.0, 2.0]
    assert table["unparsed"].tolist() == [0.25, 0.25]
    assert result.failure_length() == 7
    assert result.failure_length(threshold=0.4) == 7
    hist = result.histogram(7)
    assert list(zip(hist["parsed"], hist["count"], strict=True)) == [(5, 2), (6, 1), (None, 1)]
    assert result.histogram()["count"].sum() == 8
    with pytest.raises(ValueError, match="measured"):
        result.histogram(4)
    frame = result.to_dataframe()
    assert list(frame.columns) == [
        "task", "k", "sample", "n_prompt_tokens", "output", "parsed", "answer",
        "correct", "abs_error",
    ]  # fmt: skip
    assert frame["parsed"].tolist()[:3] == [3, 5, None]
    assert result.rows() == rows


def test_save_load_round_trip(tmp_path) -> None:
    big = 10**30  # parsed answers are Python ints: no int64 overflow
    result = make([row(3, 0, 3), row(3, 1, None), row(5, 0, big)])
    loaded = BehaviourResult.load(result.save(tmp_path / "b"))
    assert loaded.rows() == result.rows()
    assert loaded.provenance == result.provenance
    assert loaded.parsed[2] == big


def test_column_lengths_are_checked() -> None:
    with pytest.raises(ValueError, match="rows"):
        BehaviourResult(
            task="t",
            task_description="t",
            k=torch.tensor([1, 2]),
            sample=torch.tensor([0, 0]),
            n_prompt_tokens=torch.tensor([1, 2]),
            output=("a",),  # tensor columns are checked by jaxtyping, tuples here
            parsed=(1, 2),
            answer=("1", "2"),
            correct=torch.tensor([True, True]),
            abs_error=torch.zeros(2, dtype=torch.float64),
            max_new_tokens=1,
            chat=None,
            prepend_bos=None,
            provenance=PROV,
        )


def test_plots_return_figures() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    result = make([row(3, 0, 3), row(3, 1, 4), row(7, 0, None), row(7, 1, 5)])
    for fig in (result.plot(), result.plot_histogram(), result.plot_histogram(3)):
        assert isinstance(fig, Figure)
        plt.close(fig)


# ---------------------------------------------------------------- against generation


def test_rows_agree_with_an_independent_loop(load, backend: str) -> None:
    """Each row equals: tokens from the task, uncached greedy, decode, task.score."""
    model = load("tiny-gpt2", backend, dtype="float64")  # float64: no near-tie flips
    task = tasks.count_bernoulli(style="compact")
    result = behaviour(model, task, [4, 2], samples=3, batch_size=4, progress=False)
    assert result.k.tolist() == [2, 2, 2, 4, 4, 4] and result.sample.tolist() == [0, 1, 2] * 2
    eos = model.tokenizer.eos_token_id
    for r in result.rows():
        inst = task.instance(r["k"], r["sample"])
        ids = task.tokens(model, inst)
        new = greedy_continuation(model, ids[None].to(model.cfg.device), task.max_new_tokens)[0]
        new = new.tolist()
        new = new[: new.index(eos) + 1] if eos in new else new
        text = model.tokenizer.decode(new, skip_special_tokens=True)
        score = task.score(inst, text)
        assert r["n_prompt_tokens"] == ids.shape[0]
        assert (r["output"], r["parsed"], r["correct"], r["abs_error"]) == (
            text,
            score.parsed,
            score.correct,
            score.abs_error,
        )
        assert r["answer"] == inst.answer
    extra = result.provenance.extra
    assert extra["task"] == task.describe() and extra["samples"] == 3
    assert "KV cache" in extra["generation"]


def saved_lengths(path) -> list[str]:
    """The lengths a behaviour checkpoint holds (read as data: npz + JSON header)."""
    with np.load(path, allow_pickle=False) as data:
        return list(json.loads(str(data["__checkpoint__"]))["entries"])


def test_checkpoint_resumes_after_an_interruption(load, tmp_path, monkeypatch) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    task = tasks.count_ones(style="compact")
    path = tmp_path / "ck.json"
    full = behaviour(model, task, [2, 3, 5], samples=2, progress=False)

    real = _behaviour.greedy_generate
    calls = []
    fail_at = [2]

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) in fail_at:
            raise Interrupted("stop after the first length")
        return real(*args, **kwargs)

    monkeypatch.setattr(_behaviour, "greedy_generate", flaky)
    before = state_of(model)
    with pytest.raises(Interrupted):
        behaviour(model, task, [2, 3, 5], samples=2, progress=False, checkpoint=path)
    assert state_of(model) == before
    assert saved_lengths(path) == ["2"]

    calls.clear()
    fail_at.clear()
    resumed = behaviour(model, task, [2, 3, 5], samples=2, progress=False, checkpoint=path)
    assert len(calls) == 2  # lengths 3 and 5 only
    assert resumed.rows() == full.rows()
    assert saved_lengths(path) == ["2", "3", "5"]

    with pytest.raises(osl.CheckpointMismatchError, match="another model or sweep"):
        behaviour(model, task, [2, 3], samples=2, progress=False, checkpoint=path)


def test_hygiene_and_errors(load, backend: str) -> None:
    model = load("tiny-llama", backend)
    task = tasks.copy_last(style="compact")
    hooks, state = hook_registry(model), state_of(model)
    result = behaviour(model, task, [3], samples=1, progress=False, max_new_tokens=2)
    assert result.max_new_tokens == 2 and len(result.output) == 1
    assert leftover_hooks(model, hooks) == [] and state_of(model) == state
    with pytest.raises(EmptySequenceError):
        behaviour(model, task, [], progress=False)
    with pytest.raises(ValueError, match="samples"):
        behaviour(model, task, [3], samples=0, progress=False)
