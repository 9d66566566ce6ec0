"""compare_glasses / separator_search: variants, distances, sensitivity, hygiene."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import _hooknames as hn
from oversquash_lens import tasks
from oversquash_lens._glasses import (
    SPELLINGS,
    Variant,
    compare_glasses,
    glasses,
    parse_variant,
    separator_search,
)
from oversquash_lens._glasses_result import GlassesResult, SeparatorSearch
from oversquash_lens.tasks import SequencePair

from .conftest import BACKENDS
from .helpers import hook_registry, leftover_hooks, state_of

BACKEND = BACKENDS[0]


# ---------------------------------------------------------------------- a stand-in task
@dataclass(frozen=True)
class Inst:
    task: Any
    k: int
    sample: int
    text: str
    answer: str
    value: int
    relevant_item: int | None


@dataclass(frozen=True)
class StandIn:
    """Copy-last in miniature, built token by token: ``prefix`` + "1"×k + ``last``.

    Has the fields of the task suite's ``Task`` that variants change. ``fail`` makes
    ``item_positions`` raise (it is only called by the sensitivity step, inside the
    precision context), to test that the model is restored on errors.
    """

    name: str = "stand_in"
    style: str = "compact"
    separator: str = ""
    every: int = 0
    group: str = "left"
    hint: bool = False
    order: str = "question_first"
    cot: bool = False
    joiner: str = ""
    seed: int = 0
    prefix: str = "C:"
    last: str | None = "0"
    fail: bool = False

    def _items(self, k: int) -> list[str]:
        return ["1"] * k + ([self.last] if self.last is not None else [])

    def _pieces(self, k: int) -> list[tuple[str, int | None]]:
        """(text, item index or None for separators) in order."""
        items = self._items(k)
        out: list[tuple[str, int | None]] = []
        for i, item in enumerate(items):
            count = i if self.group == "left" else len(items) - i
            if self.separator and self.every and i and count % self.every == 0:
                out.append((self.separator, None))
            out.append((item, i))
        return out

    def instance(self, k: int, sample: int) -> Inst:
        text = self.prefix + "".join(t for t, _ in self._pieces(k))
        relevant = k if self.last is not None else None
        return Inst(self, k, sample, text, self.last or "1", 0, relevant)

    def _ids(self, model: Any, inst: Inst, prepend_bos: bool | None) -> tuple[list[int], list[int]]:
        tok = model.tokenizer
        bos = osl.ModelAdapter(model).prepend_bos if prepend_bos is None else prepend_bos
        ids = [tok.bos_token_id] if bos else []
        ids += tok(self.prefix, add_special_tokens=False)["input_ids"]
        positions = []
        for text, item in self._pieces(inst.k):
            piece = tok(text, add_special_tokens=False)["input_ids"]
            assert len(piece) == 1, (text, piece)
            if item is not None:
                positions.append(len(ids))
            ids += piece
        return ids, positions

    def tokens(self, model: Any, inst: Inst, chat: Any = None, prepend_bos: bool | None = None):
        return torch.tensor(self._ids(model, inst, prepend_bos)[0], dtype=torch.int64)

    def item_positions(
        self, model: Any, inst: Inst, chat: Any = None, prepend_bos: bool | None = None
    ) -> list[int]:
        if self.fail:
            raise RuntimeError("stand-in failure")
        return self._ids(model, inst, prepend_bos)[1]

    def pair(self, model: Any, k: int, prepend_bos: bool | None = None) -> SequencePair:
        a = self.tokens(model, self.instance(k, 0), prepend_bos=prepend_bos)
        b = self.tokens(model, self.instance(k + 1, 0), prepend_bos=prepend_bos)
        return SequencePair(k, a, b, f"{k} vs {k + 1}")


# ---------------------------------------------------------------------- variants
@pytest.mark.parametrize(
    ("spec", "changes", "precision", "bos"),
    [
        ("baseline", {}, None, None),
        ("sep:3", {"separator": ",", "every": 3, "group": "left"}, None, None),
        ("sep:2:right", {"separator": ",", "every": 2, "group": "right"}, None, None),
        ("hint", {"hint": True}, None, None),
        ("cot", {"cot": "zero_shot"}, None, None),
        ("cot:few_shot", {"cot": "few_shot"}, None, None),
        ("format_first", {"order": "format_first"}, None, None),
        ("question_first", {"order": "question_first"}, None, None),
        ("precision:float32", {}, "float32", None),
        ("precision:emulate:float8_e4m3", {}, "emulate:float8_e4m3", None),
        ("no_bos", {}, None, False),
        ("bos", {}, None, True),
        (
            "sep:4+hint+no_bos",
            {"separator": ",", "every": 4, "group": "left", "hint": True},
            None,
            False,
        ),
    ],
)
def test_parse_variant(spec: str, changes: dict[str, Any], precision: str | None, bos: bool | None):
    variant = parse_variant(spec)
    assert (variant.task_changes, variant.precision, variant.prepend_bos) == (
        changes,
        precision,
        bos,
    )
    assert variant.label == spec
    assert parse_variant(variant) is variant


def test_constructors_match_shorthands():
    assert glasses.separators(every=3, group="left") == parse_variant("sep:3:left")
    assert glasses.order("format_first") == parse_variant("format_first")
    assert glasses.precision("float32") == parse_variant("precision:float32")
    assert glasses.bos(False) == parse_variant("no_bos")
    assert glasses.hint() == parse_variant("hint")
    assert glasses.baseline() == parse_variant("baseline")


@pytest.mark.parametrize(
    "spec",
    ["sepp:3", "sep:x", "sep:0", "sep:3:middle", "precision:float7", "hint+hint", "", "Hint"],
)
def test_bad_variant_strings(spec: str):
    with pytest.raises(ValueError) as info:
        parse_variant(spec)
    message = str(info.value)
    assert "sep:<every>[:left|right]" in message or "twice" in message


def test_bad_variant_lists_every_spelling():
    with pytest.raises(ValueError) as info:
        parse_variant("commas")
    for spelling in SPELLINGS:
        assert spelling in str(info.value)


def test_apply_changes_and_refuses_unknown_fields():
    task = StandIn()
    changed = parse_variant("sep:2:right+hint").apply(task)
    assert (changed.separator, changed.every, changed.group, changed.hint) == (
        ",",
        2,
        "right",
        True,
    )
    assert task.every == 0  # frozen original untouched
    assert parse_variant("precision:float32").apply(task) is task
    with pytest.raises(ValueError, match="its fields"):
        Variant("x", {"colour": "red"}).apply(task)


def test_stand_in_separators():
    left = dataclasses.replace(StandIn(), separator=",", every=3, group="left")
    right = dataclasses.replace(left, group="right")
    assert left.instance(6, 0).text == "C:111,111,0"
    assert right.instance(6, 0).text == "C:1,111,110"


# ---------------------------------------------------------------------- measurements
def _last_yn(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    with osl.record(model, [hn.FINAL_NORM]) as acts, torch.no_grad():
        model(tokens.reshape(1, -1))
    return acts[hn.FINAL_NORM][0, -1].to(torch.float64)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_distances_match_direct_forward(load, backend: str, precision: str):
    model = load("tiny-llama", backend)
    task = tasks.copy_last(style="compact")
    ks = [1, 3, 6]
    result = compare_glasses(
        model,
        task,
        ks,
        ["baseline", "sep:2"],
        precision=precision,
        sensitivity="none",
        behaviour=False,
        progress=False,
    )
    for v, spec in enumerate(["baseline", "sep:2"]):
        vtask = parse_variant(spec).apply(task)
        for i, k in enumerate(ks):
            pair = vtask.pair(model, k)
            with osl.native_dtype(model, precision):
                a, b = _last_yn(model, pair.a), _last_yn(model, pair.b)
            # The same forward passes in the same dtype: the numbers agree to float64
            # rounding of the difference (the kernels are deterministic on CPU).
            assert result.linf[v, i].item() == pytest.approx((a - b).abs().max().item(), rel=1e-12)
            fmt = osl.get_format(precision)
            ra, rb = osl.round_to_format(a, fmt), osl.round_to_format(b, fmt)
            assert bool(result.bitwise_equal[v, i]) == bool(torch.equal(ra, rb))
            expected_ratio = (ra - rb).abs().max().item() / fmt.epsilon
            assert result.eps_ratio[v, i].item() == pytest.approx(expected_ratio, rel=1e-12)
            ulps = osl.ulp_distance(ra, rb, fmt).max().item()
            assert result.ulps[v, i].item() == ulps
    assert result.precisions == (precision, precision)
    assert bool(result.accuracy.isnan().all())


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_sensitivity_matches_direct_call(load, method: str):
    model = load("tiny-llama", BACKEND)
    task = tasks.copy_last(style="compact")
    result = compare_glasses(
        model,
        task,
        [2, 5],
        ["baseline", "sep:2:right"],
        precision="float32",
        sensitivity=method,
        probes=8,
        behaviour=False,
        progress=False,
    )
    for v, spec in enumerate(["baseline", "sep:2:right"]):
        vtask = parse_variant(spec).apply(task)
        for i, k in enumerate([2, 5]):
            inst = vtask.instance(k, 0)
            tokens = vtask.tokens(model, inst)
            position = vtask.item_positions(model, inst)[inst.relevant_item]
            direct = osl.sensitivity(
                model, tokens[None], method=method, probes=8, layers="final"
            ).norms[0, 0]
            # "L:1…10=": the final 0 sits just before the "=" that ends the prompt
            assert int(result.relevant_position[v, i]) == position == tokens.numel() - 2
            # Same seed, same passes: the same float64 numbers.
            assert result.relevant_sensitivity[v, i].item() == pytest.approx(
                direct[position].item(), rel=1e-12
            )
            if method == "hutchinson":
                stderr = osl.sensitivity(
                    model, tokens[None], method=method, probes=8, layers="final"
                ).stderr
                assert stderr is not None
                expected = stderr[0, 0, position].item()
                assert result.relevant_stderr[v, i].item() == pytest.approx(expected, rel=1e-12)
            else:
                assert math.isnan(result.relevant_stderr[v, i].item())
            share = direct[position] / direct.sum()
            assert result.relevant_share[v, i].item() == pytest.approx(share.item(), rel=1e-12)
            items = direct[vtask.item_positions(model, inst)].sum() / direct.sum()
            assert result.items_share[v, i].item() == pytest.approx(items.item(), rel=1e-12)


def test_no_relevant_item_gives_nan(load):
    model = load("tiny-nope", BACKEND)
    task = StandIn(last=None)  # like counting: every item matters, none is "the" answer
    result = compare_glasses(
        model,
        task,
        [3],
        sensitivity="exact",
        precision="float32",
        behaviour=False,
        progress=False,
    )
    assert math.isnan(result.relevant_sensitivity[0, 0].item())
    assert int(result.relevant_position[0, 0]) == -1
    assert 0 < result.items_share[0, 0].item() < 1


def test_precision_and_bos_variants(load):
    model = load("tiny-llama", BACKEND)
    result = compare_glasses(
        model,
        StandIn(),
        [2, 4],
        ["baseline", "precision:float32", "no_bos"],
        precision="bfloat16",
        sensitivity="none",
        behaviour=False,
        progress=False,
    )
    assert result.precisions == ("bfloat16", "float32", "bfloat16")
    pair = StandIn().pair(model, 4, prepend_bos=False)
    with osl.native_dtype(model, "bfloat16"):
        a, b = _last_yn(model, pair.a), _last_yn(model, pair.b)
    assert result.linf[2, 1].item() == pytest.approx((a - b).abs().max().item(), rel=1e-12)
    assert result.variant_specs[2]["prepend_bos"] is False


def test_refuses_bad_arguments(load):
    model = load("tiny-llama", BACKEND)
    with pytest.raises(ValueError, match="repeat"):
        compare_glasses(model, StandIn(), [1], ["hint", "hint"], behaviour=False, progress=False)
    with pytest.raises(ValueError, match="sensitivity must be"):
        compare_glasses(model, StandIn(), [1], sensitivity="fast", progress=False)
    with pytest.raises(ValueError, match="valid spellings"):
        compare_glasses(model, StandIn(), [1], ["commas"], behaviour=False, progress=False)
    with pytest.raises(TypeError, match="needs an osl.tasks.Task"):  # no score() to call
        compare_glasses(model, StandIn(), [1], sensitivity="none", progress=False)
    assert isinstance(StandIn(), tasks.TaskLike) and isinstance(tasks.copy_last(), tasks.TaskLike)


def test_model_restored_after_failure(load, backend: str):
    model = load("tiny-llama", backend)
    hooks_before, state_before = hook_registry(model), state_of(model)
    with pytest.raises(RuntimeError, match="stand-in failure"):
        compare_glasses(
            model,
            StandIn(fail=True),
            [2],
            precision="bfloat16",
            sensitivity="exact",
            behaviour=False,
            progress=False,
        )
    assert leftover_hooks(model, hooks_before) == []
    assert state_of(model) == state_before
    assert model.W_E.dtype == torch.float32


def test_result_round_trip_and_plot(load, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    model = load("tiny-llama", BACKEND)
    result = compare_glasses(
        model,
        StandIn(),
        [1, 2, 4],
        ["baseline", "sep:2"],
        sensitivity="hutchinson",
        probes=4,
        behaviour=False,
        progress=False,
    )
    loaded = GlassesResult.load(result.save(tmp_path / "glasses"))
    torch.testing.assert_close(loaded.linf, result.linf)
    assert loaded.variants == result.variants and loaded.lengths == result.lengths
    assert loaded.provenance.model_name == "tiny-llama"
    frame = result.to_dataframe()
    assert list(frame["variant"].unique()) == ["baseline", "sep:2"] and len(frame) == 6
    fig = result.plot()
    assert len(fig.axes) == 2  # accuracy (all NaN) is left out
    with pytest.raises(ValueError, match="metrics must be among"):
        result.plot(("speed",))


# ---------------------------------------------------------------------- separator search
@pytest.mark.slow
def test_separator_search_is_consistent(load):
    model = load("tiny-llama", BACKEND)
    task = tasks.copy_last(style="compact")
    found = separator_search(
        model, task, 5, precision="bfloat16", spacings=(1, 2, 7), progress=False
    )
    eps = osl.get_format("bfloat16").epsilon
    torch.testing.assert_close(found.apart, found.linf >= eps)
    keeping = [m for m in found.spacings if found.keeps_apart(m)]
    assert found.best == (max(keeping) if keeping else None)
    for m in found.spacings:
        if found.best is None or m > found.best:
            assert not found.keeps_apart(m)
            assert found.first_collapse(m) is not None
    assert found.lengths == tuple(range(1, 6))
    table = found.to_dataframe()
    assert list(table["spacing"]) == [1, 2, 7]
    # B_5 is 6 ones and a 0: spacing 7 places no separator, so these are the baseline's numbers.
    plain = compare_glasses(
        model, task, range(1, 6), sensitivity="none", behaviour=False, progress=False
    )
    torch.testing.assert_close(found.linf[-1], plain.linf[0], rtol=0, atol=0)
    loaded = SeparatorSearch.load(found.save(_tmp(found)))
    assert loaded.best == found.best


def _tmp(found: SeparatorSearch) -> str:
    import tempfile

    return tempfile.mkdtemp() + "/search"


def test_separator_search_known_answer(load):
    """No positional encoding, no BOS, all items "1": only separators tell k from k+1.

    Without a separator the two sequences hold the same tokens in other numbers, so
    every attention row is uniform over identical vectors and y_n differs only by
    float32 rounding (~1e-7), far under bf16's ε: spacings longer than every sequence
    place no separator and cannot keep the pair apart. With a comma after every "1",
    at k = 1 the longer sequence holds a comma the shorter one lacks: O(1) apart.
    """
    model = load("tiny-nope", BACKEND)
    task = StandIn(last=None, prefix="")
    found = separator_search(
        model,
        task,
        3,
        precision="emulate:bfloat16",
        spacings=(1, 4, 8),
        prepend_bos=False,
        progress=False,
    )
    assert found.linf[1:].max().item() < 1e-5  # no separator fits: rounding noise only
    assert not found.apart[1:].any()
    assert bool(found.apart[0, 0])  # "1" vs "1,1"
    assert found.best == (1 if found.keeps_apart(1) else None)
    with pytest.raises(ValueError, match="criterion"):
        separator_search(model, task, 3, criterion="close", progress=False)


def test_random_task_has_no_pair(load):
    model = load("tiny-llama", BACKEND)
    task = tasks.count_bernoulli(style="compact")
    result = compare_glasses(
        model,
        task,
        [3, 5],
        ["baseline"],
        sensitivity="exact",
        samples=2,
        behaviour=False,
        progress=False,
    )
    assert bool(result.linf.isnan().all()) and (result.argmax_equal == -1).all()
    assert bool(result.relevant_sensitivity.isfinite().all())
    with pytest.raises(ValueError, match="no deterministic pair"):
        separator_search(model, task, 4, spacings=(1,), progress=False)


def test_accuracy_matches_behaviour(load):
    from oversquash_lens._behaviour import behaviour

    model = load("tiny-llama", BACKEND)
    task = tasks.count_bernoulli(style="compact")
    result = compare_glasses(
        model,
        task,
        [2, 3],
        ["baseline", "precision:float32"],
        samples=3,
        sensitivity="none",
        progress=False,
    )
    with osl.native_dtype(model, "float32"):
        direct = behaviour(model, task, [2, 3], samples=3, progress=False).accuracy()
    expected = torch.tensor(direct["accuracy"].tolist(), dtype=torch.float64)
    torch.testing.assert_close(result.accuracy[1], expected, rtol=0, atol=0)
    assert bool(((result.accuracy * 3).round() == result.accuracy * 3).all())  # k of 3 right
