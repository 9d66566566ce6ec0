"""Sequence families: token ids checked against real tokenizations, on two tokenizers.

The tiny models ship a GPT-2-style byte-level BPE ("1" = 18, " 1" = one token "Ġ1",
"11" = two tokens); SmolLM2's tokenizer has "1" = 33 and " 1" = two tokens (Ġ, 1).
The reference for every built sequence is the tokenizer itself, run on the full string
(add_special_tokens=False) with the BOS id prepended by hand.
"""

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import tasks
from oversquash_lens._errors import TokenizationError
from oversquash_lens.tasks._base import check_lengths, max_fitting
from oversquash_lens.tasks._layout import check_assembly, de_bruijn_pairs, probe_layout

from .conftest import BACKENDS

TOKENIZERS = [
    "tiny-gpt2",
    pytest.param("smollm2-135m", marks=pytest.mark.slow),
]
ONE_ID = {"tiny-gpt2": 18, "smollm2-135m": 33}  # id of "1" (checked below)


@pytest.fixture(params=TOKENIZERS)
def model(request: pytest.FixtureRequest, load) -> Any:
    return load(request.param, BACKENDS[0])


def ids(model: Any, text: str, bos: bool) -> list[int]:
    """Reference: the tokenizer on the whole string, BOS prepended by hand."""
    tok = model.tokenizer
    return ([tok.bos_token_id] if bos else []) + tok(text, add_special_tokens=False)["input_ids"]


def default_bos(model: Any) -> bool:
    return osl.ModelAdapter(model).prepend_bos


def left_groups(s: str, every: int, sep: str) -> str:
    return sep.join(s[i : i + every] for i in range(0, len(s), every))


# ------------------------------------------------------------------ every family vs tokenizer
KS = [*range(1, 40), 64, 100, 257, 500]


@pytest.mark.parametrize(
    ("family", "text"),
    [
        (tasks.ones(), lambda k: "1" * k),
        (tasks.ones(prefix=tasks.COUNT_ONES), lambda k: tasks.COUNT_ONES + "1" * k),
        (tasks.ones(prefix=tasks.COUNT_ONES + "\n"), lambda k: tasks.COUNT_ONES + "\n" + "1" * k),
        (tasks.ones(prefix=tasks.COUNT_ONES, joiner=" "), lambda k: tasks.COUNT_ONES + " 1" * k),
        (tasks.repeated_last("the", prefix="Words:", joiner=" "), lambda k: "Words:" + " the" * k),
        (tasks.fixed_final(prefix="Q:"), lambda k: "Q:" + "1" * k + "0"),
        (
            tasks.separated(prefix=tasks.COPY_NUMBER),
            lambda k: tasks.COPY_NUMBER + left_groups("1" * k, 3, ","),
        ),
        (
            tasks.separated(prefix=tasks.COPY_NUMBER, group="right"),
            lambda k: tasks.COPY_NUMBER + format(int("1" * k), ","),  # thousands grouping
        ),
        (tasks.separated(every=1, separator=";"), lambda k: ";".join("1" * k)),
    ],
    ids=["ones", "count", "count-nl", "spaced", "words", "final", "left", "right", "every1"],
)
def test_built_ids_equal_full_string_tokenization(model, family, text) -> None:
    bos = default_bos(model)
    pairs = family.pairs(model, KS)
    assert [p.k for p in pairs] == KS
    for p in pairs:
        assert p.a.dtype == torch.int64 and p.a.ndim == 1 and p.a.device.type == "cpu"
        assert p.a.tolist() == ids(model, text(p.k), bos), p.k
        assert p.b.tolist() == ids(model, text(p.k + 1), bos), p.k


def test_random_prefix_equals_full_string_tokenization(model) -> None:
    bos = default_bos(model)
    for joiner in ("", " "):
        fam = tasks.random_prefix(prefix=tasks.COUNT_ONES, joiner=joiner, seed=5)
        for p in fam.pairs(model, KS):
            digits = "".join(joiner + "0123456789"[i] for i in fam.draw(p.k))
            text_a = tasks.COUNT_ONES + digits + joiner + "1"
            assert p.a.tolist() == ids(model, text_a, bos)
            assert p.b.tolist() == ids(model, text_a + joiner + "1", bos)


# ------------------------------------------------------------------ exact ids, structure
def test_repeated_last_exact_ids(model) -> None:
    one = ONE_ID[osl.ModelAdapter(model).info.name]
    assert ids(model, "1", bos=False) == [one]
    head = ids(model, tasks.COUNT_ONES, bos=False)
    for bos in (True, False):
        start = [model.tokenizer.bos_token_id] if bos else []
        for p in tasks.ones(prefix=tasks.COUNT_ONES, bos=bos).pairs(model, [1, 7, 300]):
            assert p.a.tolist() == start + head + [one] * p.k
            assert p.b.tolist() == start + head + [one] * (p.k + 1)


FAMILIES = [
    tasks.ones(prefix="Q:"),
    tasks.fixed_final(),
    tasks.separated(),
    tasks.separated(group="right"),
    tasks.random_prefix(),
    tasks.pair("10", "110"),
]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.describe()["family"])
def test_prefix_and_nesting_claims_hold(model, family) -> None:
    pairs = family.pairs(model, None if family.name == "pair" else range(family.min_k, 30))
    prefix = [torch.equal(p.b[: len(p.a)], p.a) and len(p.b) > len(p.a) for p in pairs]
    steps = [torch.equal(p.b, q.a) for p, q in zip(pairs, pairs[1:], strict=False)]
    assert family.a_prefix_of_b == all(prefix)  # no claim where it fails, and vice versa
    assert family.nested == (family.a_prefix_of_b and all(steps) and family.name != "pair")
    if family.name in ("repeated_last", "fixed_final", "separated"):
        assert all(steps)  # B_k = A_{k+1} for every count family, nested or not


def test_fixed_final_same_last_token_and_k0(model) -> None:
    fam = tasks.fixed_final("1", "0", prefix="Q:", bos=False)
    p0, p3 = fam.pairs(model, [0, 3])
    assert p0.a.tolist() == ids(model, "Q:0", False) and p0.b.tolist() == ids(model, "Q:10", False)
    assert p3.a[-1] == p3.b[-1] and p3.b.numel() == p3.a.numel() + 1


@pytest.mark.parametrize(
    ("group", "k", "text", "sep_at"),
    [
        ("left", 7, "111,111,1", [3, 7]),
        ("right", 7, "1,111,111", [1, 5]),
        ("left", 6, "111,111", [3]),
        ("right", 4, "1,111", [1]),
    ],
)
def test_separator_positions(model, group, k, text, sep_at) -> None:
    p = tasks.separated(every=3, group=group, bos=False).pair(model, k)
    comma = ids(model, ",", False)
    assert len(comma) == 1
    assert torch.nonzero(p.a == comma[0]).flatten().tolist() == sep_at
    assert p.a.tolist() == ids(model, text, False)


def test_right_grouping_is_not_a_prefix_family(model) -> None:
    p = tasks.separated(group="right", bos=False).pair(model, 3)  # "111" vs "1,111"
    assert not torch.equal(p.b[: len(p.a)], p.a)


def test_bos_on_off_default_and_matches_transformer_lens(model) -> None:
    text = tasks.COUNT_ONES + "1" * 5
    for bos in (True, False):
        a = tasks.ones(prefix=tasks.COUNT_ONES, bos=bos).pair(model, 5).a
        assert a.tolist() == model.to_tokens(text, prepend_bos=bos)[0].tolist()
        assert (a[0].item() == model.tokenizer.bos_token_id) == bos
    default = tasks.ones(prefix=tasks.COUNT_ONES).pair(model, 5).a
    assert default.tolist() == model.to_tokens(text)[0].tolist()
    assert default.tolist() == ids(model, text, default_bos(model))


# ------------------------------------------------------------------ random prefix
def test_random_prefix_reproducible_per_seed_and_k(model) -> None:
    fam = tasks.random_prefix(seed=11, bos=False)
    many = fam.pairs(model, range(1, 50))
    again = tasks.random_prefix(seed=11, bos=False).pairs(model, [40, 3])
    assert torch.equal(again[0].a, many[39].a) and torch.equal(again[1].b, many[2].b)
    other = tasks.random_prefix(seed=12, bos=False).pair(model, 40)
    assert not torch.equal(other.a, many[39].a)
    one = ONE_ID[osl.ModelAdapter(model).info.name]
    for p in many:
        assert p.a.numel() == p.k and p.a[-1] == one
        assert torch.equal(p.b[:-1], p.a) and p.b[-1] == one


def test_random_prefix_digits_are_uniform(model) -> None:
    # Counted from the built token ids over many lengths (not from draw()): 10 digits,
    # n = 20,100 draws; chi-square with 9 d.o.f. has a 99.9% quantile of 27.88.
    fam = tasks.random_prefix(seed=0, bos=False)
    names = Counter()
    for p in fam.pairs(model, range(2, 202)):
        names.update(model.tokenizer.convert_ids_to_tokens(p.a[:-1].tolist()))
    n = sum(names.values())
    assert n == sum(k - 1 for k in range(2, 202)) and set(names) == set("0123456789")
    chi2 = sum((c - n / 10) ** 2 / (n / 10) for c in names.values())
    assert chi2 < 27.88, (chi2, names)
    # independent draws per k: consecutive lengths do not share their digits
    shared = [fam.draw(k)[:5] == fam.draw(k + 1)[:5] for k in range(10, 60)]
    assert sum(shared) <= 1


def test_random_prefix_custom_items_and_validation(model) -> None:
    p = tasks.random_prefix(digits=["the", "a"], last="the", joiner=" ", bos=False).pair(model, 30)
    assert set(model.tokenizer.convert_ids_to_tokens(p.a.tolist())) <= {"Ġthe", "Ġa"}
    with pytest.raises(ValueError, match="distinct"):
        tasks.random_prefix(digits="0012")
    with pytest.raises(ValueError, match="seed"):
        tasks.random_prefix(seed=-1)


def test_de_bruijn_covers_every_pair() -> None:
    for n in range(1, 11):
        seq = de_bruijn_pairs(n)
        assert len(seq) == n * n + 1
        assert {(x, y) for x, y in zip(seq, seq[1:], strict=False)} == {
            (x, y) for x in range(n) for y in range(n)
        }


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("family", "match"),
    [
        (tasks.repeated_last("l"), r"item 'l' .*merges with the item before it.*\['ll'\]"),
        (tasks.fixed_final("0", "l", prefix="Hel"), "merges with the end of the prefix"),
        (tasks.repeated_last("12"), r"item '12' is 2 tokens in context.*\['1', '2'\]"),
        (tasks.random_prefix(digits=["10", "2"]), r"item '10' is 2 tokens"),
    ],
)
def test_items_that_split_or_merge_are_refused(model, family, match) -> None:
    with pytest.raises(TokenizationError, match=match) as err:
        family.pairs(model, [1, 5])
    assert isinstance(err.value, ValueError) and isinstance(err.value, osl.OversquashLensError)
    assert "joiner=' '" in str(err.value) or "prefix" in str(err.value)


def test_tokenizer_specific_refusals(load) -> None:
    tiny = load("tiny-gpt2", BACKENDS[0])
    with pytest.raises(TokenizationError, match="'hello' is 3 tokens.*'he', 'll', 'o'"):
        tasks.repeated_last("hello").pair(tiny, 2)
    # a trailing space merges into the first digit in GPT-2-style BPE ("Ġ1")
    with pytest.raises(TokenizationError, match=r"end of the prefix.*\['Ġ1'\]"):
        tasks.ones(prefix=tasks.COUNT_ONES + " ").pair(tiny, 2)


@pytest.mark.slow
def test_smollm2_specific_refusals_and_acceptances(load) -> None:
    smol = load("smollm2-135m", BACKENDS[0])
    with pytest.raises(TokenizationError, match=r"item ' 1' is 2 tokens.*\['Ġ', '1'\]"):
        tasks.repeated_last(" 1").pair(smol, 2)
    p = tasks.ones(prefix=tasks.COUNT_ONES + " ").pair(smol, 2)  # "? " then "1": no merge here
    assert p.a.tolist()[-3:] == [216, 33, 33]
    assert tasks.repeated_last("hello").pair(smol, 3).a.tolist() == ids(smol, "hello" * 3, False)


def test_length_validation(model) -> None:
    fam = tasks.ones()
    with pytest.raises(osl.EmptySequenceError):
        fam.pairs(model, [])
    with pytest.raises(ValueError, match="needs lengths"):
        fam.pairs(model)
    with pytest.raises(ValueError, match=">= 1"):
        fam.pairs(model, [0, 3])
    with pytest.raises(ValueError, match=">= 0"):
        tasks.fixed_final().pair(model, -1)
    with pytest.raises(TypeError):
        fam.pairs(model, [1.5])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        fam.pairs(model, [True])
    assert [p.k for p in fam.pairs(model, np.array([3, 1, 3]))] == [3, 1, 3]


def test_check_lengths_and_max_fitting_pure() -> None:
    assert check_lengths(iter([2, np.int64(5)]), 1) == [2, 5]
    with pytest.raises(TypeError, match="iterable"):
        check_lengths("123", 1)  # type: ignore[arg-type]
    for cost in (lambda k: 3 + 2 * k, lambda k: 10 + k // 3 + k, lambda k: 7 + k * k):
        for n_ctx in (4, 5, 10, 11, 100, 1000):
            brute = [k for k in range(0, 2000) if cost(k) <= n_ctx]
            assert max_fitting(cost, n_ctx, 0) == (max(brute) if brute else None)
            assert max_fitting(cost, n_ctx, 3) == (
                max(brute) if max(brute, default=0) >= 3 else None
            )
    with pytest.raises(ValueError, match="never exceeds"):
        max_fitting(lambda k: 5, 10, 0)


def test_context_window_boundary(model) -> None:
    adapter = osl.ModelAdapter(model)
    fam = tasks.separated(prefix=tasks.COPY_NUMBER, bos=True)
    n_head = 1 + len(ids(model, tasks.COPY_NUMBER, False))

    def n_b(k: int) -> int:
        return n_head + (k + 1) + k // 3  # k + 1 ones and floor(k / 3) commas

    k_max = max(k for k in range(adapter.n_ctx) if n_b(k) <= adapter.n_ctx)
    last = fam.pair(model, k_max)
    assert last.b.numel() == n_b(k_max) <= adapter.n_ctx
    with pytest.raises(osl.PromptTooLongError, match=rf"k={k_max + 1}.*n_ctx={adapter.n_ctx}") as e:
        fam.pairs(model, [1, k_max + 1, 10**9])
    assert f"up to {k_max}" in str(e.value)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="group must be 'left'"):
        tasks.separated(group="middle")
    with pytest.raises(ValueError, match="every"):
        tasks.separated(every=0)
    with pytest.raises(ValueError, match="separator"):
        tasks.separated(separator="")
    with pytest.raises(ValueError, match="item"):
        tasks.repeated_last("")
    with pytest.raises(TypeError):
        tasks.ones(bos="yes")  # type: ignore[arg-type]


def test_missing_bos_token_is_a_clear_error() -> None:
    model = osl.load_model("tiny-gpt2")  # private copy: its tokenizer is changed
    model.tokenizer.bos_token = None
    assert model.tokenizer.bos_token_id is None
    with pytest.raises(TokenizationError, match="no BOS token.*bos=False"):
        tasks.ones().pair(model, 2)  # the model prepends a BOS by default
    assert tasks.ones(bos=False).pair(model, 2).a.tolist() == [18, 18]


# ------------------------------------------------------------------ fake tokenizers
class GreedyTokenizer:
    """Longest-match tokenizer over a fixed vocabulary (merges what the vocab allows)."""

    bos_token_id = 0

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = {s: i + 1 for i, s in enumerate(vocab)}
        self.inverse = {i: s for s, i in self.vocab.items()}

    def encode(self, text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            j = max(j for j in range(i + 1, len(text) + 1) if text[i:j] in self.vocab)
            out.append(self.vocab[text[i:j]])
            i = j
        return out

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        assert not add_special_tokens
        return {"input_ids": self.encode(text)}

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.inverse[i] for i in ids]


def test_probe_layout_on_fake_tokenizers() -> None:
    tok = GreedyTokenizer(["1", "2", " ", "Q", "?", " 1"])
    layout = probe_layout(tok.encode, tok.convert_ids_to_tokens, "Q?", [[(" ", "1")] * 3])
    assert layout.head == (4, 5) and layout.units == {(" ", "1"): (6,)}  # joiner merged in
    merging = GreedyTokenizer(["1", "11", "Q"])
    with pytest.raises(TokenizationError, match=r"merges with the item before it.*\['11'\]"):
        probe_layout(merging.encode, merging.convert_ids_to_tokens, "Q", [[("", "1")] * 3])
    with pytest.raises(TokenizationError, match="merges with the end of the prefix"):
        probe_layout(merging.encode, merging.convert_ids_to_tokens, "1", [[("", "1")]])


def test_long_range_merges_are_caught_by_the_whole_string_check() -> None:
    # "1111" is one token but "11" and "111" are not: the 3-unit probe passes and only the
    # comparison with the full string (k >= 4) can notice.
    tok = GreedyTokenizer(["1", "1111"])
    layout = probe_layout(tok.encode, tok.convert_ids_to_tokens, "", [[("", "1")] * 3])
    assert layout.ids([("", "1")] * 3) == tok.encode("111")
    with pytest.raises(TokenizationError, match="differs from tokenizing the whole string"):
        check_assembly(
            tok.encode, tok.convert_ids_to_tokens, "1" * 5, layout.ids([("", "1")] * 5), "A_5"
        )


def test_fake_tokenizer_end_to_end(monkeypatch) -> None:
    model = osl.load_model("tiny-gpt2")  # private copy
    fake = GreedyTokenizer(["1", "1111", "x"])
    # TL 4's bridge refuses non-Hugging-Face tokenizers in its setter: swap the one the
    # families read (through ModelAdapter) instead of the model's attribute.
    monkeypatch.setattr(osl.ModelAdapter, "tokenizer", property(lambda self: fake))
    fam = tasks.ones(prefix="x")
    assert fam.pair(model, 2).a.tolist() == [0, 3, 1, 1]
    with pytest.raises(TokenizationError, match="A_5 built from pieces differs"):
        fam.pairs(model, [2, 5, 9])  # verified: 2 (smallest), 5 (median), 9 (largest)


# ------------------------------------------------------------------ pair family
def test_pair_family(model) -> None:
    bos = default_bos(model)
    fam = tasks.pair("10", "110")
    (p,) = fam.pairs(model)
    assert (
        p.k == 0
        and p.a.tolist() == ids(model, "10", bos)
        and p.b.tolist() == ids(model, "110", bos)
    )
    assert fam.pair(model, 7).k == 7 and [q.k for q in fam.pairs(model, [4])] == [4]
    with pytest.raises(ValueError, match="no length parameter"):
        fam.pairs(model, [1, 2])
    raw = tasks.pair([5, 6], torch.tensor([5, 6, 6])).pair(model, 0)
    assert raw.a.tolist() == [5, 6] and raw.b.tolist() == [5, 6, 6]  # ids used verbatim
    with pytest.raises(ValueError, match="bos only applies to strings"):
        tasks.pair([5], [5, 5], bos=True)
    with pytest.raises(osl.EmptySequenceError):
        tasks.pair("", "1")
    with pytest.raises(osl.PromptTooLongError, match="n_ctx"):
        tasks.pair([1] * (osl.ModelAdapter(model).n_ctx + 1), [1]).pairs(model)


# ------------------------------------------------------------------ misc
def test_describe_is_json_and_names_the_family() -> None:
    families = [
        tasks.ones(prefix=tasks.COUNT_ONES),
        tasks.fixed_final(),
        tasks.random_prefix(seed=3),
        tasks.separated(group="right"),
        tasks.pair("1", [1, 2]),
    ]
    for fam in families:
        d = json.loads(json.dumps(fam.describe()))
        assert d == fam.describe() and d["family"] == fam.name
    assert tasks.ones().describe() == tasks.repeated_last("1").describe()


def test_sequence_pair_validation() -> None:
    with pytest.raises(ValueError, match="int64"):
        tasks.SequencePair(1, torch.tensor([1], dtype=torch.int32), torch.tensor([1, 1]), "")
    with pytest.raises(osl.EmptySequenceError):
        tasks.SequencePair(1, torch.tensor([], dtype=torch.int64), torch.tensor([1]), "")


def test_bridge_backend_builds_the_same_pairs(load, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    fam = tasks.separated(prefix=tasks.COPY_NUMBER, group="right", joiner=" ")
    got = fam.pairs(model, [1, 4, 50])
    text = tasks.COPY_NUMBER + " 1" * 2 + ", 1 1 1" * 16  # 50 = 2 + 16 groups of 3
    assert got[2].a.tolist() == ids(model, text, default_bos(model))
    assert got[1].b.tolist() == ids(model, tasks.COPY_NUMBER + " 1 1, 1 1 1", default_bos(model))
    assert osl.ModelAdapter(model).backend == backend


@pytest.mark.slow
def test_smollm2_builds_2048_lengths_fast(load) -> None:
    smol = load("smollm2-135m", BACKENDS[0])
    fam = tasks.ones(prefix=tasks.COUNT_ONES)  # fresh family: includes probing the tokenizer
    start = time.perf_counter()
    pairs = fam.pairs(smol, range(1, 2049))
    elapsed = time.perf_counter() - start
    assert (
        len(pairs) == 2048 and pairs[-1].b.numel() == len(ids(smol, tasks.COUNT_ONES, False)) + 2049
    )
    assert elapsed < 1.0, elapsed  # measured ~0.04 s on the 2-CPU dev machine
