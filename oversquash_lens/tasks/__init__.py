"""The paper's sequence families, built token by token and checked against the tokenizer.

A family gives, for each length k, a pair of token sequences (A_k, B_k) whose
last-token representations the collapse analysis compares:

- :func:`repeated_last` / :func:`ones`: prefix + item × k vs × (k + 1) (Thm 4.2, Fig 5a/c);
- :func:`fixed_final`: prefix + 1^k 0 vs 1^(k+1) 0 (Fig 1a);
- :func:`random_prefix`: prefix + k − 1 random digits + "1" vs + "11" (Fig 5b);
- :func:`separated`: ones with a separator every few items (Fig 5d);
- :func:`pair`: any two strings or token-id lists.

The behavioural tasks (Fig 2, 3, 4, 6, 11) are :class:`Task` s built by
:func:`copy_last`, :func:`copy_first`, :func:`count_ones`, :func:`count_bernoulli`,
:func:`sum_ones`, :func:`count_word` and :func:`interleaved`: prompts in the paper's or a
compact toy-model format, ground truth, :func:`parse_answer`, and tokens with every
item's position checked (see ``_task.py``).

Conventions: the prefix is used verbatim and the joiner goes before every item (the
first included), so ``ones(prefix=COUNT_ONES, joiner=" ")`` reads "…sequences? 1 1 1"
(the prompt constants carry no trailing whitespace: see ``_prompts.py``). ``bos=None``
follows the model's default (``ModelAdapter(model).prepend_bos``). Token ids come back
as int64 CPU tensors; pairs from one call may share storage. ``family.a_prefix_of_b``
and ``family.nested`` say whether one forward pass can serve a pair or every length.

Token ids are assembled from the in-context ids of the pieces (BOS, prefix, and each
joiner + item unit), found by probing the tokenizer once per family and tokenizer
(cached), so ``ones().pairs(model, range(1, 2049))`` costs list arithmetic, not 2,048
tokenizations. The probe checks every transition between pieces (each item exactly one
token, no merging with its neighbours, the same ids after every predecessor); a few
built sequences per call (smallest, median and largest k, plus group boundaries for
separators) are then compared with a real tokenization of the whole string. Any
mismatch raises :class:`TokenizationError` naming the item and the tokens.

Example:
    >>> import oversquash_lens as osl
    >>> from oversquash_lens import tasks
    >>> model = osl.load_model("tiny-gpt2")
    >>> [p.k for p in tasks.ones(prefix=tasks.COUNT_ONES).pairs(model, [1, 10, 100])]
    [1, 10, 100]
"""

from .._errors import TokenizationError as TokenizationError
from ._base import SequenceFamily as SequenceFamily
from ._base import SequencePair as SequencePair
from ._catalog import TASKS as TASKS
from ._catalog import copy_first as copy_first
from ._catalog import copy_last as copy_last
from ._catalog import count_bernoulli as count_bernoulli
from ._catalog import count_ones as count_ones
from ._catalog import count_word as count_word
from ._catalog import interleaved as interleaved
from ._catalog import sum_ones as sum_ones
from ._custom import PairFamily as PairFamily
from ._custom import pair as pair
from ._families import FixedFinal as FixedFinal
from ._families import RepeatedLast as RepeatedLast
from ._families import Separated as Separated
from ._families import fixed_final as fixed_final
from ._families import ones as ones
from ._families import repeated_last as repeated_last
from ._families import separated as separated
from ._instance import Score as Score
from ._instance import TaskInstance as TaskInstance
from ._instance import TaskLike as TaskLike
from ._kinds import TASK_NAMES as TASK_NAMES
from ._kinds import WORDS as WORDS
from ._layout import Layout as Layout
from ._parse import parse_answer as parse_answer
from ._prompts import ANSWER_FORMAT as ANSWER_FORMAT
from ._prompts import COPY_FIRST as COPY_FIRST
from ._prompts import COPY_NUMBER as COPY_NUMBER
from ._prompts import COT_FEW_SHOT_LEAD as COT_FEW_SHOT_LEAD
from ._prompts import COT_FEW_SHOT_TASK as COT_FEW_SHOT_TASK
from ._prompts import COT_ZERO_SHOT as COT_ZERO_SHOT
from ._prompts import COUNT_ONES as COUNT_ONES
from ._prompts import COUNT_ONES_INSTRUCTION as COUNT_ONES_INSTRUCTION
from ._prompts import COUNT_WORD as COUNT_WORD
from ._prompts import HINT_LEAD as HINT_LEAD
from ._prompts import LAST_DIGIT as LAST_DIGIT
from ._prompts import LAST_DIGIT_HINT as LAST_DIGIT_HINT
from ._prompts import PERFORM_SUM as PERFORM_SUM
from ._prompts import PROMPTS as PROMPTS
from ._prompts import SUM_ANSWER_FORMAT as SUM_ANSWER_FORMAT
from ._random import RandomPrefix as RandomPrefix
from ._random import random_prefix as random_prefix
from ._task import Task as Task
from ._units import UnitFamily as UnitFamily

__all__ = [
    "ANSWER_FORMAT",
    "COPY_FIRST",
    "COPY_NUMBER",
    "COT_FEW_SHOT_LEAD",
    "COT_FEW_SHOT_TASK",
    "COT_ZERO_SHOT",
    "COUNT_ONES",
    "COUNT_ONES_INSTRUCTION",
    "COUNT_WORD",
    "FixedFinal",
    "HINT_LEAD",
    "LAST_DIGIT",
    "LAST_DIGIT_HINT",
    "Layout",
    "PERFORM_SUM",
    "PROMPTS",
    "PairFamily",
    "RandomPrefix",
    "RepeatedLast",
    "SUM_ANSWER_FORMAT",
    "Score",
    "Separated",
    "SequenceFamily",
    "SequencePair",
    "TASKS",
    "TASK_NAMES",
    "Task",
    "TaskLike",
    "TaskInstance",
    "TokenizationError",
    "UnitFamily",
    "WORDS",
    "copy_first",
    "copy_last",
    "count_bernoulli",
    "count_ones",
    "count_word",
    "fixed_final",
    "interleaved",
    "ones",
    "pair",
    "parse_answer",
    "random_prefix",
    "repeated_last",
    "separated",
    "sum_ones",
]
