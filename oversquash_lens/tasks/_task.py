r"""The paper's behavioural tasks (Fig 2, 3, 4, 6, 11): prompts, ground truth, tokens.

A :class:`Task` builds :class:`TaskInstance` s (message text + ground truth) for a length
``k`` and a sample index, parses and scores generated answers, and tokenizes instances
for a model, locating every sequence item's token.

Tasks and their sequences (items are the units a tokenizer must keep apart):

=================  ==========================================  =======  =============
task               sequence for k                              answer   relevant item
=================  ==========================================  =======  =============
copy_last          k ones then a 0: ``1…10`` (k + 1 items)     0        the final 0
copy_first         a 0 then k ones: ``01…1`` (k + 1 items)     0        the first 0
count_ones         k ones                                      k        the last item
count_bernoulli    k digits, each 1 with probability p         # ones   the last item
sum_ones           ``1+1+…+1``, k ones (joiner ``"+"``)        k        the last item
count_word         k words, ``word`` a random number of times  # word   the last word
interleaved        k alternating digits ending in 0: ``…1010``  0        the final 0
=================  ==========================================  =======  =============

``interleaved`` is the Fig 2c "glasses" for copy_last: the same question and answer
(the last digit, always 0), on an alternating sequence that starts with 1 for even k
and with 0 for odd k. ``count_word`` draws the count uniformly from 1..k and its
positions at random; the other words come uniformly from a fixed fruit vocabulary.
Random draws use ``numpy.random.default_rng([seed, k, sample])``.

Paper style (App. C.1, in our words), one line each, joined by ``"\n"``::

    <question>            e.g. "What is the last digit in this sequence?"
    <sequence>            e.g. "11110"
    <answer format>       "The answer to your question is: <ANSWER>" (sums: "…xxxx")

``order="format_first"`` (Fig 11) moves the answer-format line first. ``hint=True``
(copy_last, Fig 2b) appends ``" Hint: it's not necessarily a 1, check carefully."`` to
the question. ``cot="zero_shot"`` adds the line "Let's think step by step." at the end;
``cot="few_shot"`` puts two worked examples (k = 3 and 4, same variant, other random
draws) before the message. Compact style (toy models): ``f"{op}:{sequence}="`` with op
``L`` copy_last, ``F`` copy_first, ``C`` count_ones / count_bernoulli, ``S`` sum_ones,
``I`` interleaved; the model answers with digits and ``"\n"``.

Separators: ``separator`` every ``every`` items, grouped from the left ("111,111,1") or
the right ("1,111,111"); the joiner follows the separator ("1 1, 1 1" with ``" "``).
"""

import dataclasses
import operator
from dataclasses import dataclass
from typing import Any, SupportsIndex

import numpy as np
import torch

from .._errors import TokenizationError
from .._types import TokenSeq
from . import _prompts as P
from ._base import Lengths, SequencePair, check_lengths
from ._chat import encode_message, fallback_hint
from ._instance import Score, TaskInstance
from ._kinds import KINDS, Draw, Kind, Span, describe_options, render_sequence, validate_options
from ._parse import parse_answer

EXAMPLE_KS = (3, 4)
"""Lengths of the two few-shot worked examples."""
_EXAMPLE_SAMPLE = 1_000_000  # sample indices of the examples' random draws (+0, +1)


# ------------------------------------------------------------------ the task
@dataclass(frozen=True)
class Task:
    """One of the paper's tasks with all of its prompt options (see the module docstring).

    Build tasks with the constructors (:func:`copy_last`, :func:`count_ones`, …) and
    variants with :meth:`replace`. Every option is a field, so tasks compare, hash and
    print by value.

    Attributes:
        name: Task name (one of ``TASK_NAMES``).
        style: ``"paper"`` (App. C.1 structure) or ``"compact"`` (``"C:111="``).
        separator: Text inserted every ``every`` items (None: no separator).
        every: Items per group between separators.
        group: ``"left"`` ("111,111,1") or ``"right"`` ("1,111,111").
        hint: copy_last only: add the Fig 2b hint to the question.
        order: ``"question_first"`` or ``"format_first"`` (Fig 11).
        cot: None, ``"zero_shot"`` or ``"few_shot"`` chain of thought (paper style).
        joiner: Text between items (``""``: contiguous digits; ``" "``: spaced).
        seed: Seed of the random tasks' draws (``[seed, k, sample]``).
        p: count_bernoulli only: probability of a 1.
        word: count_word only: the counted word.
    """

    name: str
    style: str = "paper"
    separator: str | None = None
    every: int | None = None
    group: str = "left"
    hint: bool = False
    order: str = "question_first"
    cot: str | None = None
    joiner: str = ""
    seed: int = 0
    p: float | None = None
    word: str | None = None

    def __post_init__(self) -> None:
        validate_options(self)

    @property
    def _kind(self) -> Kind:
        return KINDS[self.name]

    def replace(self, **changes: Any) -> "Task":
        """A copy with some options changed (``dataclasses.replace``), validated again.

        Example:
            >>> from oversquash_lens import tasks
            >>> tasks.copy_last().replace(hint=True).hint
            True
        """
        return dataclasses.replace(self, **changes)

    # -------------------------------------------------------------- text
    def _draw(self, k: int, sample: int) -> Draw:
        return self._kind.draw(self, k, np.random.default_rng([self.seed, k, sample]))

    def _lines(self, items: list[str]) -> tuple[list[str], int, list[Span]]:
        """Message lines, the index of the sequence line, and item spans in that line."""
        sequence, spans = render_sequence(
            items, self.joiner, self.separator, self.every, self.group
        )
        question, fmt = self._kind.question(self), self._kind.answer_format
        if self.order == "question_first":
            return [question, sequence, fmt], 1, spans
        return [fmt, question, sequence], 2, spans

    def _example(self, j: int) -> list[str]:
        k = EXAMPLE_KS[j]
        items, value, _ = self._draw(k, _EXAMPLE_SAMPLE + j)
        filled = self._kind.answer_format.replace(self._kind.placeholder, str(value))
        solution = f"Solution: {self._kind.reasoning(self, items, value)} {filled}"
        return [f"Example {j + 1}:", *self._lines(items)[0], solution, ""]

    def _message(self, items: list[str]) -> tuple[str, list[Span]]:
        if self.style == "compact":
            sequence, spans = render_sequence(
                items, self.joiner, self.separator, self.every, self.group
            )
            lead = f"{self._kind.op}:"
            return f"{lead}{sequence}=", [(a + len(lead), b + len(lead)) for a, b in spans]
        lines, at, spans = self._lines(items)
        if self.cot == "zero_shot":
            lines.append(P.COT_ZERO_SHOT)
        if self.cot == "few_shot":
            head = [P.COT_FEW_SHOT_LEAD, "", *self._example(0), *self._example(1)]
            lines, at = [*head, P.COT_FEW_SHOT_TASK, *lines], at + len(head) + 1
        offset = sum(len(line) + 1 for line in lines[:at])
        return "\n".join(lines), [(a + offset, b + offset) for a, b in spans]

    def instance(self, k: SupportsIndex, sample: SupportsIndex = 0) -> TaskInstance:
        """The prompt and ground truth for length ``k`` (deterministic in seed, k, sample).

        Raises:
            ValueError: For ``k`` below the task's minimum or a negative sample.

        Example:
            >>> from oversquash_lens import tasks
            >>> print(tasks.count_ones().instance(3).text)
            Please count the number of ones in the following sequence:
            111
            The answer to your question is: <ANSWER>
        """
        (k_int,) = check_lengths([k], self._kind.min_k)
        (s_int,) = check_lengths([sample], 0)
        items, value, relevant = self._draw(k_int, s_int)
        text, spans = self._message(items)
        return TaskInstance(
            task=self.name,
            k=k_int,
            sample=s_int,
            text=text,
            answer=str(value),
            value=value,
            relevant_item=relevant,
            items=tuple(items),
            spans=tuple(spans),
        )

    def instances(self, lengths: Lengths, samples: int = 1) -> list[TaskInstance]:
        """Instances for every length and sample index (length-major order).

        Example:
            >>> from oversquash_lens import tasks
            >>> [(i.k, i.sample) for i in tasks.count_bernoulli().instances([5, 9], samples=2)]
            [(5, 0), (5, 1), (9, 0), (9, 1)]
        """
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an int >= 1, got {samples!r}")
        ks = check_lengths(lengths, self._kind.min_k)
        return [self.instance(k, s) for k in ks for s in range(samples)]

    # -------------------------------------------------------------- tokens
    def _check_instance(self, instance: TaskInstance) -> None:
        if not isinstance(instance, TaskInstance):
            raise TypeError(f"expected a TaskInstance, got {type(instance).__name__}")
        if instance != self.instance(instance.k, instance.sample):
            raise ValueError(
                f"this {instance.task} instance was not built by this task "
                f"({self.describe()}); build it with task.instance(k, sample)"
            )

    def _encode(
        self, model: Any, instance: TaskInstance, chat: bool | None, prepend_bos: bool | None
    ) -> tuple[TokenSeq, list[int]]:
        self._check_instance(instance)
        try:
            return encode_message(
                model,
                instance.text,
                instance.spans,
                chat=chat,
                prepend_bos=prepend_bos,
                compact=self.style == "compact",
                single_token=not self._kind.words,
            )
        except TokenizationError as exc:
            hint = self._fallback_hint(model, instance, chat)
            raise TokenizationError(f"{exc}. {hint}") from None

    def _fallback_hint(self, model: Any, instance: TaskInstance, chat: bool | None) -> str:
        fallback = self._kind.fallback_joiner
        if self.joiner == fallback:
            return "The fallback joiner does not help either: try a separator or another model"
        other = self.replace(joiner=fallback).instance(instance.k, instance.sample)
        return fallback_hint(
            model,
            fallback,
            other.text,
            other.spans,
            chat=chat,
            compact=self.style == "compact",
            single_token=not self._kind.words,
        )

    def tokens(
        self,
        model: Any,
        instance: TaskInstance,
        *,
        chat: bool | None = None,
        prepend_bos: bool | None = None,
    ) -> TokenSeq:
        """Token ids of an instance for ``model``, checking every item's tokenization.

        Args:
            model: A HookedTransformer or TransformerBridge with a tokenizer.
            instance: Built by this task (``task.instance(k, sample)``).
            chat: None applies the tokenizer's chat template when it has one (user
                message, ``add_generation_prompt=True``); compact tasks never do.
            prepend_bos: None: the model's default for plain text, none inside a chat
                template (it writes its own special tokens); True / False to force.

        Returns:
            Token ids ``[pos]`` (int64, CPU).

        Raises:
            TokenizationError: If a digit item is not exactly one token, or any item
                merges with a neighbour (the message says whether ``joiner=" "`` works).
            PromptTooLongError: Beyond the model's context window.
            ValueError: For an instance of another task or variant.

        Example:
            >>> import oversquash_lens as osl
            >>> from oversquash_lens import tasks
            >>> model = osl.load_model("tiny-gpt2")
            >>> task = tasks.copy_last()
            >>> inst = task.instance(2)
            >>> ids = task.tokens(model, inst, prepend_bos=False)
            >>> model.to_str_tokens(ids[task.item_positions(model, inst, prepend_bos=False)])
            ['1', '1', '0']
        """
        return self._encode(model, instance, chat, prepend_bos)[0]

    def item_positions(
        self,
        model: Any,
        instance: TaskInstance,
        *,
        chat: bool | None = None,
        prepend_bos: bool | None = None,
    ) -> TokenSeq:
        """Index of each item's token in :meth:`tokens` (same arguments).

        For word items (count_word) a word may be several tokens: its last one is given.
        The answer-relevant token is ``item_positions(...)[instance.relevant_item]``.

        Example:
            >>> import oversquash_lens as osl
            >>> from oversquash_lens import tasks
            >>> model = osl.load_model("tiny-gpt2")
            >>> task = tasks.copy_first().replace(style="compact")
            >>> inst = task.instance(2)
            >>> task.item_positions(model, inst, prepend_bos=False).tolist()
            [2, 3, 4]
        """
        positions = self._encode(model, instance, chat, prepend_bos)[1]
        return torch.tensor(positions, dtype=torch.int64)

    def pair(
        self,
        model: Any,
        k: SupportsIndex,
        *,
        chat: bool | None = None,
        prepend_bos: bool | None = None,
    ) -> SequencePair:
        """Tokens of ``instance(k)`` vs ``instance(k + 1)``: one more item in B.

        Only for deterministic tasks (copy_last, copy_first, count_ones, sum_ones,
        interleaved): random tasks draw unrelated sequences for k and k + 1.

        Raises:
            ValueError: For a random task.

        Example:
            >>> import oversquash_lens as osl
            >>> from oversquash_lens import tasks
            >>> model = osl.load_model("tiny-gpt2")
            >>> task = tasks.count_ones(style="compact")
            >>> p = task.pair(model, 3, prepend_bos=False)
            >>> len(p.b) - len(p.a)
            1
        """
        if not self._kind.deterministic:
            raise ValueError(
                f"{self.name} draws a random sequence per length, so k and k + 1 are not "
                "a pair; use a deterministic task or tasks.random_prefix"
            )
        a_inst, b_inst = self.instance(k), self.instance(operator.index(k) + 1)
        a = self.tokens(model, a_inst, chat=chat, prepend_bos=prepend_bos)
        b = self.tokens(model, b_inst, chat=chat, prepend_bos=prepend_bos)
        return SequencePair(a_inst.k, a, b, f"{self.describe()}: k={a_inst.k} vs k={b_inst.k}")

    # -------------------------------------------------------------- answers
    @property
    def max_new_tokens(self) -> int:
        """Tokens to generate: 24 in paper style (512 with chain of thought), 5 compact.

        The filled answer format is at most 13 tokens for SmolLM2 (16 for the tiny
        models' small vocabulary) with a 3-digit answer, which leaves room for a short
        preamble ("Sure! "); compact answers are up to four digits and the newline.

        Example:
            >>> from oversquash_lens import tasks
            >>> task = tasks.count_ones()
            >>> task.max_new_tokens, task.replace(style="compact").max_new_tokens
            (24, 5)
        """
        if self.style == "compact":
            return 5
        return 24 if self.cot is None else 512

    def parse(self, output: str) -> int | None:
        """The integer answer in generated text (:func:`parse_answer` with this style).

        Example:
            >>> from oversquash_lens import tasks
            >>> tasks.copy_last().parse("The answer to your question is: 0")
            0
        """
        return parse_answer(output, self.style)

    def score(self, instance: TaskInstance, output: str) -> Score:
        """Parse ``output`` and compare it with the instance's ground truth.

        Example:
            >>> from oversquash_lens import tasks
            >>> task = tasks.count_ones()
            >>> task.score(task.instance(7), "The answer to your question is: 5")
            Score(parsed=5, correct=False, abs_error=2.0)
        """
        parsed = self.parse(output)
        if parsed is None:
            return Score(parsed=None, correct=False, abs_error=None)
        return Score(parsed, parsed == instance.value, float(abs(parsed - instance.value)))

    def describe(self) -> str:
        """One line naming the task and every option that differs from the default.

        Example:
            >>> from oversquash_lens import tasks
            >>> tasks.copy_last().replace(separator=",", every=3, hint=True).describe()
            "copy_last (paper style; separator ',' every 3 from the left; hint; seed 0)"
        """
        return describe_options(self)
