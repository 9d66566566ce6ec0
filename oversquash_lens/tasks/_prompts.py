r"""Prompt texts of the paper's experiments (Fig 2–6 and the prompts of App. C.1).

Every constant is the bare text, with no trailing space or newline, because families
use a prefix verbatim and whitespace at the end of a prefix changes how the first item
tokenizes. In GPT-2-style byte-level BPE (the tiny models' tokenizer) ``"? 1"`` is
``["?", "Ġ1"]``: a trailing space merges into the first digit, which then differs from
the following ``"1"`` tokens (the families refuse that with a ``TokenizationError``).
SmolLM2 splits ``" 1"`` into ``["Ġ", "1"]`` instead. Choices that tokenize the same way
in both shipped tokenizers (checked in ``tests/test_tasks.py``):

- no separator: ``ones(prefix=COUNT_ONES)`` → ``"…sequences?111"`` ("?" and each "1"
  are separate tokens);
- a line break: ``ones(prefix=COUNT_ONES + "\n")`` → ``"…sequences?\n111"`` (one
  newline token, then the digits);
- spaced items: ``ones(prefix=COUNT_ONES, joiner=" ")`` → ``"…sequences? 1 1 1"`` (the
  joiner goes before every item, so every item tokenizes alike).

The paper's exact whitespace is not published, and its prompts for Gemini (App. C.1)
are reproduced here by their structure (question, sequence, answer format): treat these
as the structure, not verbatim copies.
"""

COUNT_ONES = "How many ones are in the following sequences?"
"""Fig 5a/5b: prefix of the ones and random-digit sequences."""

COPY_NUMBER = "Can you copy the following number?"
"""Fig 5c/5d: prefix of the ones and comma-separated ones."""

LAST_DIGIT = "What is the last digit in this sequence?"
"""Fig 2 (copying): asks for the last digit of "1…10"."""

LAST_DIGIT_HINT = "it's not necessarily a 1, check carefully"
"""Fig 2b: the hint that delays the copying failure."""

COUNT_ONES_INSTRUCTION = "Please count the number of ones in the following sequence:"
"""Fig 3/4 (counting ones), App. C.1."""

PERFORM_SUM = "Please perform the following sum:"
"""Fig 3 (summing 1 + … + 1), App. C.1."""

ANSWER_FORMAT = "The answer to your question is: <ANSWER>"
"""App. C.1: the answer format for copying and counting prompts."""

SUM_ANSWER_FORMAT = "The final answer to your maths question is: xxxx"
"""App. C.1: the answer format for sum prompts."""

COPY_FIRST = "What is the first digit in this sequence?"
"""Fig 2 (copying): asks for the first digit of "01…1"."""

COUNT_WORD = "Please count the number of times the word '{word}' appears in the following sentence:"
"""Fig 6 (counting a word): a template, filled with ``COUNT_WORD.format(word=...)``."""

HINT_LEAD = "Hint:"
"""Fig 2b: written before the hint, after the question (``"…? Hint: it's not…"``)."""

COT_ZERO_SHOT = "Let's think step by step."
"""Zero-shot chain of thought (Fig 3): the last line of the message."""

COT_FEW_SHOT_LEAD = "Here are two worked examples."
"""Few-shot chain of thought: the line before the worked examples."""

COT_FEW_SHOT_TASK = "Now solve this one, step by step in the same way."
"""Few-shot chain of thought: the line between the examples and the real question."""

PROMPTS: dict[str, str] = {
    "count_ones": COUNT_ONES,
    "copy_number": COPY_NUMBER,
    "last_digit": LAST_DIGIT,
    "last_digit_hint": LAST_DIGIT_HINT,
    "count_ones_instruction": COUNT_ONES_INSTRUCTION,
    "perform_sum": PERFORM_SUM,
    "answer_format": ANSWER_FORMAT,
    "sum_answer_format": SUM_ANSWER_FORMAT,
    "copy_first": COPY_FIRST,
    "count_word": COUNT_WORD,
    "hint_lead": HINT_LEAD,
    "cot_zero_shot": COT_ZERO_SHOT,
    "cot_few_shot_lead": COT_FEW_SHOT_LEAD,
    "cot_few_shot_task": COT_FEW_SHOT_TASK,
}
"""Every prompt constant by a short name."""
