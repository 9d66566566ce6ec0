"""The paper's task suite: texts, ground truth, parsers, tokens and item positions.

References are independent of the code under test: exact strings written out by hand,
ground truth recounted from the text, and item positions checked by decoding the token
prefix up to each item (byte-level BPE decodes exactly) rather than through offsets.
"""

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import tasks
from oversquash_lens._errors import PromptTooLongError, TokenizationError
from oversquash_lens.models._tiny import tiny_tokenizer_path
from oversquash_lens.tasks._chat import locate_items

from .conftest import BACKENDS

Q_LAST = "What is the last digit in this sequence?"
Q_FIRST = "What is the first digit in this sequence?"
Q_COUNT = "Please count the number of ones in the following sequence:"
Q_SUM = "Please perform the following sum:"
FMT = "The answer to your question is: <ANSWER>"
SUM_FMT = "The final answer to your maths question is: xxxx"
HINT = "Hint: it's not necessarily a 1, check carefully."


def sequence_line(inst: tasks.TaskInstance, task: tasks.Task) -> str:
    """The line holding the sequence (paper style, question first, no CoT)."""
    assert task.order == "question_first" and task.cot is None
    return inst.text.split("\n")[1]


# ------------------------------------------------------------------ construction
@pytest.mark.parametrize(
    ("task", "k", "text", "answer", "relevant"),
    [
        (tasks.copy_last(), 3, f"{Q_LAST}\n1110\n{FMT}", 0, 3),
        (tasks.copy_last(), 0, f"{Q_LAST}\n0\n{FMT}", 0, 0),
        (tasks.copy_first(), 3, f"{Q_FIRST}\n0111\n{FMT}", 0, 0),
        (tasks.count_ones(), 4, f"{Q_COUNT}\n1111\n{FMT}", 4, 3),
        (tasks.sum_ones(), 3, f"{Q_SUM}\n1+1+1\n{SUM_FMT}", 3, 2),
        (tasks.sum_ones(joiner=" + "), 2, f"{Q_SUM}\n1 + 1\n{SUM_FMT}", 2, 1),
        (tasks.interleaved(), 4, f"{Q_LAST}\n1010\n{FMT}", 0, 3),
        (tasks.interleaved(), 5, f"{Q_LAST}\n01010\n{FMT}", 0, 4),
        (tasks.count_ones(joiner=" "), 3, f"{Q_COUNT}\n1 1 1\n{FMT}", 3, 2),
        (tasks.copy_last(hint=True), 1, f"{Q_LAST} {HINT}\n10\n{FMT}", 0, 1),
        (tasks.copy_last(style="compact"), 3, "L:1110=", 0, 3),
        (tasks.copy_first(style="compact"), 2, "F:011=", 0, 0),
        (tasks.count_ones(style="compact"), 5, "C:11111=", 5, 4),
        (tasks.sum_ones(style="compact"), 3, "S:1+1+1=", 3, 2),
        (tasks.interleaved(style="compact"), 3, "I:010=", 0, 2),
        (tasks.count_ones(style="compact").replace(separator=",", every=2), 5, "C:11,11,1=", 5, 4),
    ],
)
def test_exact_text_and_ground_truth(task, k, text, answer, relevant) -> None:
    inst = task.instance(k)
    assert inst.text == text
    assert (inst.value, inst.answer, inst.relevant_item) == (answer, str(answer), relevant)
    assert (inst.task, inst.k, inst.sample) == (task.name, k, 0)
    # spans point at the items, in order, and the relevant item holds the answer for copies
    assert [inst.text[a:b] for a, b in inst.spans] == list(inst.items)
    if task.name in ("copy_last", "copy_first", "interleaved"):
        assert inst.items[relevant] == "0" and inst.value == 0


def test_item_counts_per_task() -> None:
    k = 7
    assert len(tasks.copy_last().instance(k).items) == k + 1
    assert len(tasks.copy_first().instance(k).items) == k + 1
    for ctor in (tasks.count_ones, tasks.sum_ones, tasks.interleaved, tasks.count_bernoulli):
        assert len(ctor().instance(k).items) == k
    assert len(tasks.count_word().instance(k).items) == k


def test_interleaved_alternates_and_ends_in_zero() -> None:
    for k in range(1, 12):
        items = tasks.interleaved().instance(k).items
        assert items[-1] == "0"
        assert all(a != b for a, b in zip(items, items[1:], strict=False))


def test_count_bernoulli_ground_truth_and_rate() -> None:
    task = tasks.count_bernoulli(p=0.7, seed=5)
    fractions = []
    for inst in task.instances([50, 200], samples=10):
        line = sequence_line(inst, task)
        assert set(line) <= {"0", "1"} and len(line) == inst.k
        assert inst.value == line.count("1") == inst.items.count("1")
        fractions.append(inst.value / inst.k)
    # 10 × (50 + 200) = 2,500 Bernoulli(0.7) draws: sd of the mean ≈ 0.009, 0.05 is > 5 sd
    assert abs(np.mean(fractions) - 0.7) < 0.05
    assert tasks.count_bernoulli(p=0.0).instance(30).value == 0
    assert tasks.count_bernoulli(p=1.0).instance(30).value == 30


def test_count_word_ground_truth() -> None:
    task = tasks.count_word("pear", seed=3)
    seen = set()
    for inst in task.instances([1, 5, 20], samples=8):
        words = sequence_line(inst, task).split(" ")
        assert len(words) == inst.k
        assert inst.value == words.count("pear") and 1 <= inst.value <= inst.k
        assert set(words) <= set(tasks.WORDS)
        assert "'pear'" in inst.text.split("\n")[0]
        seen.add(inst.value)
    assert len(seen) > 3  # the count varies between samples
    custom = tasks.count_word("kiwi").instance(9)  # a word outside the vocabulary
    assert custom.value == custom.items.count("kiwi") >= 1


def test_determinism_and_seeds() -> None:
    for ctor in tasks.TASKS.values():
        task = ctor()
        assert task.instance(12, 3) == ctor().instance(12, 3)
        assert task.instances([4, 9], samples=2) == task.instances([4, 9], samples=2)
    rand = tasks.count_bernoulli()
    draws = {rand.instance(40, s).text for s in range(5)}
    assert len(draws) == 5  # samples differ
    assert rand.instance(40).text != rand.replace(seed=1).instance(40).text
    # a draw depends only on (seed, k, sample), not on which other lengths were asked for
    assert rand.instances([40])[0] == rand.instances([3, 40, 7])[1]


def test_instances_order_and_errors() -> None:
    task = tasks.count_ones()
    assert [(i.k, i.sample) for i in task.instances([2, 1], samples=2)] == [
        (2, 0),
        (2, 1),
        (1, 0),
        (1, 1),
    ]
    with pytest.raises(ValueError, match="samples"):
        task.instances([1], samples=0)
    with pytest.raises(ValueError, match=">= 1"):
        task.instance(0)
    with pytest.raises(osl.EmptySequenceError):
        task.instances([])
    with pytest.raises(TypeError):
        task.instance(2.0)  # type: ignore[arg-type]


# ------------------------------------------------------------------ variants
def test_variants_change_the_text_as_documented() -> None:
    base = tasks.copy_last().instance(4)
    hinted = tasks.copy_last().replace(hint=True).instance(4)
    assert hinted.text == base.text.replace(Q_LAST, f"{Q_LAST} {HINT}", 1)

    first = tasks.count_ones().replace(order="format_first").instance(3)
    assert first.text == f"{FMT}\n{Q_COUNT}\n111"

    zero = tasks.count_ones().replace(cot="zero_shot").instance(3)
    assert zero.text == f"{Q_COUNT}\n111\n{FMT}\nLet's think step by step."

    left = tasks.count_ones().replace(separator=",", every=3).instance(7)
    right = tasks.count_ones().replace(separator=",", every=3, group="right").instance(7)
    assert sequence_line(left, tasks.count_ones()) == "111,111,1"
    assert sequence_line(right, tasks.count_ones()) == "1,111,111"
    assert right.value == left.value == 7
    spaced = tasks.count_ones(joiner=" ").replace(separator=",", every=2).instance(5)
    assert spaced.text.split("\n")[1] == "1 1, 1 1, 1"
    assert [spaced.text[a:b] for a, b in spaced.spans] == ["1"] * 5


def test_few_shot_examples_are_correct_worked_examples() -> None:
    task = tasks.count_bernoulli(seed=4).replace(cot="few_shot")
    inst = task.instance(10)
    text = inst.text
    assert text.startswith(tasks.COT_FEW_SHOT_LEAD + "\n")
    assert text.count("Example ") == 2 and tasks.COT_FEW_SHOT_TASK in text
    plain = task.replace(cot=None).instance(10)
    assert text.endswith("\n" + plain.text)  # the real question comes last, unchanged
    # each example's solution ends with the filled format holding its true count
    lines = text.split("\n")
    for n in (1, 2):
        at = lines.index(f"Example {n}:")
        digits, solution = lines[at + 2], lines[at + 4]
        assert solution.startswith("Solution: ")
        assert task.parse(solution) == digits.count("1")
        assert len(digits) == tasks._task.EXAMPLE_KS[n - 1]
    # the spans still point at the real sequence
    assert [text[a:b] for a, b in inst.spans] == list(plain.items)
    assert task.max_new_tokens > tasks.count_bernoulli().max_new_tokens


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="hint only applies to copy_last"):
        tasks.count_ones().replace(hint=True)
    with pytest.raises(ValueError, match="no compact form"):
        tasks.count_word().replace(style="compact")
    with pytest.raises(ValueError, match="compact style has no chain of thought"):
        tasks.count_ones(style="compact").replace(cot="zero_shot")
    with pytest.raises(ValueError, match="separator and every together"):
        tasks.count_ones().replace(separator=",")
    with pytest.raises(ValueError, match="sum_ones needs"):
        tasks.sum_ones(joiner="")
    with pytest.raises(ValueError, match="joiner such as"):
        tasks.count_word(joiner="")
    with pytest.raises(ValueError, match="p is count_bernoulli"):
        tasks.count_ones().replace(p=0.5)
    with pytest.raises(ValueError, match="probability"):
        tasks.count_bernoulli(p=1.5)
    with pytest.raises(ValueError, match="single alphabetic word"):
        tasks.count_word("two words")
    with pytest.raises(ValueError, match="unknown task"):
        tasks.Task("count_sheep")
    with pytest.raises(ValueError, match="order must be one of"):
        tasks.count_ones().replace(order="backwards")
    with pytest.raises(ValueError, match="every must be"):
        tasks.count_ones().replace(separator=",", every=0)


def test_describe_and_registry() -> None:
    assert tasks.TASK_NAMES == tuple(tasks.TASKS)
    for name, ctor in tasks.TASKS.items():
        task = ctor()
        assert task.name == name and task.describe().startswith(name + " (")
        json.dumps(task.describe())
    text = tasks.count_ones().replace(order="format_first", cot="few_shot").describe()
    assert "answer format first" in text and "few-shot chain of thought" in text


# ------------------------------------------------------------------ parsers
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer to your question is: 17", 17),
        ("The answer to your question is: <ANSWER>0</ANSWER>", 0),
        ("The answer to your question is: **42**", 42),
        ("the answer to your question is:\n\n  7", 7),
        ("The final answer to your maths question is: 1,024", 1024),
        ("The final answer to your maths question is: xxxx 12", 12),
        ("The answer to your question is: five", 5),
        ("I count 3 ones. The answer to your question is: 4", 4),  # marker wins
        ("1, 2, 3. The answer to your question is: <ANSWER>", None),  # marker, no number
        ("The answer to your question is: <ANSWER>. The answer to your question is: 9", 9),
        ("There are 12 ones.", 12),
        ("3 or maybe 4", 3),  # several numbers, no marker: the first
        ("It is -3.", -3),
        ("4.0", 4),
        ("3.5", None),  # not an integer answer
        ("1,2", 1),  # not a thousands group
        ("one two three", None),  # number words only count after the marker
        ("no number here", None),
        ("", None),
    ],
)
def test_parse_paper(text, expected) -> None:
    assert tasks.parse_answer(text) == expected
    assert tasks.count_ones().parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12\n", 12), ("0\nC:1=", 0), ("7", 7), ("5x", 5), ("\n5", None), ("", None), ("-3\n", None)],
)
def test_parse_compact(text, expected) -> None:
    assert tasks.parse_answer(text, style="compact") == expected
    assert tasks.count_ones(style="compact").parse(text) == expected


def test_parse_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="style"):
        tasks.parse_answer("1", style="chat")
    with pytest.raises(TypeError):
        tasks.parse_answer(5)  # type: ignore[arg-type]


def test_score() -> None:
    task = tasks.count_ones()
    inst = task.instance(9)
    assert task.score(inst, "The answer to your question is: 9") == tasks.Score(9, True, 0.0)
    assert task.score(inst, "The answer to your question is: 12") == tasks.Score(12, False, 3.0)
    assert task.score(inst, "I don't know") == tasks.Score(None, False, None)
    compact = tasks.copy_last(style="compact")
    assert compact.score(compact.instance(5), "0\n").correct


# ------------------------------------------------------------------ tokens
def check_positions(tok: Any, ids: torch.Tensor, positions: torch.Tensor, full: str, inst) -> None:
    """Reference: decoding the ids up to each item's token gives the text up to the item."""
    ids_list = ids.tolist()
    offset = full.index(inst.text)
    previous_end = offset + inst.spans[0][0]
    for pos, (_, b) in zip(positions.tolist(), inst.spans, strict=True):
        assert tok.decode(ids_list[: pos + 1]) == full[: offset + b]  # ends with the item
        before = tok.decode(ids_list[:pos])
        # the token holds part of this item and nothing of the previous one
        assert full.startswith(before) and previous_end <= len(before) < offset + b
        previous_end = offset + b


@pytest.fixture
def tiny(load, backend) -> Any:
    return load("tiny-gpt2", backend)


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_tokens_and_item_positions_on_tiny(tiny, name) -> None:
    tok = osl.ModelAdapter(tiny).tokenizer
    bos = osl.ModelAdapter(tiny).prepend_bos
    variants = [tasks.TASKS[name]()]
    if name != "count_word":
        variants += [
            variants[0].replace(style="compact"),
            variants[0].replace(separator=",", every=3, group="right"),
        ]
    for task in variants:
        for inst in task.instances([1, 5, 13]):
            ids = task.tokens(tiny, inst)
            positions = task.item_positions(tiny, inst)
            assert ids.dtype == torch.int64 and positions.dtype == torch.int64
            assert len(positions) == len(inst.items)
            plain = tok(inst.text, add_special_tokens=False)["input_ids"]
            assert ids.tolist() == [tok.bos_token_id] * bos + plain  # no chat template
            body = ids[int(bos) :]
            check_positions(tok, body, positions - int(bos), inst.text, inst)
            if task.name != "count_word":  # digits: each item is exactly its own token
                names = tok.convert_ids_to_tokens(ids[positions].tolist())
                assert [n.lstrip("Ġ") for n in names] == list(inst.items)
            without = task.item_positions(tiny, inst, prepend_bos=False)
            assert torch.equal(without + int(bos), positions)


def test_compact_tokenization_on_the_shipped_tiny_tokenizer() -> None:
    """The toy-model trainer's format: op, ':', one token per digit, '='."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer_path()))
    for name in ("copy_last", "copy_first", "count_ones", "count_bernoulli", "interleaved"):
        task = tasks.TASKS[name](style="compact")
        for inst in task.instances([1, 2, 9, 50], samples=2):
            pieces = tok.convert_ids_to_tokens(tok(inst.text)["input_ids"])
            op = inst.text[0]
            assert pieces == [op, ":", *inst.items, "="]
    summed = tasks.sum_ones(style="compact").instance(3)
    assert tok.convert_ids_to_tokens(tok(summed.text)["input_ids"]) == list("S:1+1+1=")
    for answer in ("0\n", "17\n", "195\n"):  # answers: one token per digit, then newline
        assert tok.convert_ids_to_tokens(tok(answer)["input_ids"]) == [*answer[:-1], "Ċ"]


def test_pair_differs_by_one_item(tiny) -> None:
    for name in ("copy_last", "copy_first", "count_ones", "sum_ones", "interleaved"):
        for task in (tasks.TASKS[name](), tasks.TASKS[name](style="compact")):
            p = task.pair(tiny, 6)
            assert isinstance(p, tasks.SequencePair) and p.k == 6
            a_inst, b_inst = task.instance(6), task.instance(7)
            assert torch.equal(p.a, task.tokens(tiny, a_inst))
            assert torch.equal(p.b, task.tokens(tiny, b_inst))
            assert len(b_inst.items) == len(a_inst.items) + 1
            step = 2 if name == "sum_ones" else 1  # one more "+1" or one more digit
            assert len(p.b) - len(p.a) == step
    for name in ("count_bernoulli", "count_word"):
        with pytest.raises(ValueError, match="random sequence"):
            tasks.TASKS[name]().pair(tiny, 3)


def test_chat_and_bos_options_on_a_model_without_template(tiny) -> None:
    tok = osl.ModelAdapter(tiny).tokenizer
    task = tasks.count_ones()
    inst = task.instance(4)
    plain = tok(inst.text, add_special_tokens=False)["input_ids"]
    assert task.tokens(tiny, inst, chat=False, prepend_bos=True).tolist() == [
        tok.bos_token_id,
        *plain,
    ]
    assert task.tokens(tiny, inst, prepend_bos=False).tolist() == plain
    with pytest.raises(ValueError, match="no chat template"):
        task.tokens(tiny, inst, chat=True)
    with pytest.raises(ValueError, match="compact-style tasks never use a chat template"):
        compact = tasks.count_ones(style="compact")
        compact.tokens(tiny, compact.instance(4), chat=True)


def test_instances_of_another_variant_are_refused(tiny) -> None:
    inst = tasks.copy_last().instance(3)
    with pytest.raises(ValueError, match="not built by this task"):
        tasks.copy_last(hint=True).tokens(tiny, inst)
    with pytest.raises(ValueError, match="not built by this task"):
        tasks.count_ones().item_positions(tiny, inst)


def test_prompt_too_long(tiny) -> None:
    n_ctx = osl.ModelAdapter(tiny).n_ctx
    task = tasks.count_ones(style="compact")
    with pytest.raises(PromptTooLongError, match="n_ctx"):
        task.tokens(tiny, task.instance(n_ctx))
    assert len(task.tokens(tiny, task.instance(n_ctx - 10), prepend_bos=False)) == n_ctx - 7


# ------------------------------------------------------------------ tokenizers that merge
class OffsetTokenizer:
    """Longest-match tokenizer over a fixed vocabulary, with character offsets."""

    bos_token_id = 0
    chat_template = None

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = {s: i + 1 for i, s in enumerate(vocab)}
        self.inverse = {i: s for s, i in self.vocab.items()}

    def __call__(
        self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False
    ) -> dict[str, list[Any]]:
        ids, offsets, i = [], [], 0
        while i < len(text):
            j = max(j for j in range(i + 1, len(text) + 1) if text[i:j] in self.vocab)
            ids.append(self.vocab[text[i:j]])
            offsets.append((i, j))
            i = j
        out: dict[str, list[Any]] = {"input_ids": ids}
        if return_offsets_mapping:
            out["offset_mapping"] = offsets
        return out

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.inverse[i] for i in ids]


def test_merging_tokenizer_is_refused_with_the_working_fallback(monkeypatch) -> None:
    model = osl.load_model("tiny-gpt2", backend=BACKENDS[0])  # private copy
    fake = OffsetTokenizer(["C", ":", "=", "1", "11", " "])
    # TL 4's bridge refuses non-HF tokenizers in its setter: swap the one tasks read
    monkeypatch.setattr(osl.ModelAdapter, "tokenizer", property(lambda self: fake))
    task = tasks.count_ones(style="compact")
    with pytest.raises(TokenizationError, match=r"2 tokens, not one|merges") as info:
        task.tokens(model, task.instance(4))
    assert "Use task.replace(joiner=' ')" in str(info.value)
    spaced = task.replace(joiner=" ")
    inst = spaced.instance(4)
    assert spaced.item_positions(model, inst, prepend_bos=False).tolist() == [2, 4, 6, 8]

    fake_spaced = OffsetTokenizer(["C", ":", "=", "1", "11", " ", "1 1"])  # merges " " too
    monkeypatch.setattr(osl.ModelAdapter, "tokenizer", property(lambda self: fake_spaced))
    with pytest.raises(TokenizationError, match="joiner=' ' does not work either"):
        task.tokens(model, task.instance(4))
    with pytest.raises(TokenizationError, match="does not help either"):
        spaced.tokens(model, inst)


def test_tokenizer_without_offsets_is_refused(monkeypatch) -> None:
    model = osl.load_model("tiny-gpt2", backend=BACKENDS[0])

    class NoOffsets(OffsetTokenizer):
        def __call__(self, text: str, add_special_tokens: bool = True, **kw: Any) -> Any:
            if kw.get("return_offsets_mapping"):
                raise NotImplementedError("slow tokenizer")
            return super().__call__(text, add_special_tokens)

    fake = NoOffsets(["C", ":", "=", "1"])
    monkeypatch.setattr(osl.ModelAdapter, "tokenizer", property(lambda self: fake))
    task = tasks.count_ones(style="compact")
    with pytest.raises(TokenizationError, match="fast"):
        task.tokens(model, task.instance(2))


def test_locate_items_rules() -> None:
    # tokens: "Q" ":" "1" " 1" "1," "1"
    offsets = [(0, 1), (1, 2), (2, 3), (3, 5), (5, 7), (7, 8)]
    assert locate_items(offsets, [(2, 3), (4, 5)], single_token=True) == [2, 3]
    with pytest.raises(TokenizationError, match="merges with the text after it"):
        locate_items(offsets, [(5, 6)], single_token=True)
    with pytest.raises(TokenizationError, match="merges with the text before it"):
        locate_items([(0, 2)], [(1, 2)], single_token=True)  # ":1" as one token
    with pytest.raises(TokenizationError, match="2 tokens, not one"):
        locate_items([(0, 1), (1, 2)], [(0, 2)], single_token=True)
    assert locate_items([(0, 1), (1, 2)], [(0, 2)], single_token=False) == [1]


# ------------------------------------------------------------------ SmolLM2 chat template
@pytest.mark.slow
def test_smollm2_chat_template_and_positions(load) -> None:
    model = load("smollm2-135m", BACKENDS[0])
    tok = osl.ModelAdapter(model).tokenizer
    for name, ctor in tasks.TASKS.items():
        task = ctor()
        inst = task.instance(6, 1)
        ids = task.tokens(model, inst)
        reference = tok.apply_chat_template(
            [{"role": "user", "content": inst.text}], add_generation_prompt=True, tokenize=True
        )["input_ids"]
        assert ids.tolist() == list(reference)
        decoded = tok.decode(ids.tolist())
        assert decoded.startswith("<|im_start|>") and decoded.endswith("<|im_start|>assistant\n")
        positions = task.item_positions(model, inst)
        check_positions(tok, ids, positions, decoded, inst)
        if name != "count_word":
            assert tok.convert_ids_to_tokens(ids[positions].tolist()) == list(inst.items)
        plain = task.tokens(model, inst, chat=False)
        assert "<|im_start|>" not in tok.decode(plain.tolist())
    spaced = tasks.count_ones(joiner=" ")  # " 1" is two tokens (Ġ, 1): items still single
    inst = spaced.instance(5)
    got = spaced.tokens(model, inst)[spaced.item_positions(model, inst)]
    assert tok.convert_ids_to_tokens(got.tolist()) == ["1"] * 5
    # the answer format with a 3-digit number fits in max_new_tokens with room to spare
    for fmt in (tasks.ANSWER_FORMAT, tasks.SUM_ANSWER_FORMAT):
        filled = fmt.replace("<ANSWER>", "195").replace("xxxx", "195")
        n_tokens = len(tok(filled, add_special_tokens=False)["input_ids"])
        assert n_tokens + 8 <= tasks.count_ones().max_new_tokens  # room for "Sure! " etc.
