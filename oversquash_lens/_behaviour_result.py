"""BehaviourResult: a task's generated answers over lengths, scored (paper Fig 2, 3, 4, 6).

One row per (length k, sample): the prompt's token count, the decoded output, the parsed
answer, the ground truth, and whether it was right. Tables and figures derive from the
rows; :func:`failure_length` is the pure rule behind :meth:`BehaviourResult.failure_length`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._types import RowFlags, RowFloats, RowInts
from .plotting import style
from .results import Provenance, Result

COLUMNS = (
    "task",
    "k",
    "sample",
    "n_prompt_tokens",
    "output",
    "parsed",
    "answer",
    "correct",
    "abs_error",
)


def failure_length(
    ks: Sequence[int], accuracies: Sequence[float], threshold: float = 0.5
) -> int | None:
    """N*: the smallest k whose accuracy, and that of every larger k, is below ``threshold``.

    Args:
        ks: Measured lengths, increasing.
        accuracies: Accuracy at each length (NaN counts as failing: nothing was right).
        threshold: Accuracy below which a length fails.

    Returns:
        The first failing length of the final run of failures: it and every longer
        measured length fail. None if the longest length does not fail. An earlier
        failure that later lengths recover from does not count (40 below, not 10).

    Example:
        >>> failure_length([5, 10, 20, 40], [1.0, 0.25, 0.75, 0.0])
        40
        >>> failure_length([5, 10], [0.0, 1.0]) is None
        True
    """
    if len(ks) != len(accuracies):
        raise ValueError(f"{len(ks)} lengths but {len(accuracies)} accuracies")
    if list(ks) != sorted(ks):
        raise ValueError(f"lengths must increase, got {list(ks)}")
    found: int | None = None
    for k, acc in zip(reversed(ks), reversed(accuracies), strict=True):
        if not (acc < threshold or math.isnan(acc)):
            break
        found = int(k)
    return found


@dataclass
class BehaviourResult(Result):
    """Greedy answers of one task at several lengths, scored against the ground truth.

    Attributes:
        task: Task name, e.g. ``"count_ones"``.
        task_description: ``task.describe()``: every prompt option.
        k: ``[row]`` length parameter of each prompt.
        sample: ``[row]`` sample index.
        n_prompt_tokens: ``[row]`` tokens in the prompt (chat template included).
        output: The decoded generation per row (special tokens skipped).
        parsed: The parsed integer answer per row (None: nothing parsed).
        answer: The ground truth per row, as text.
        correct: ``[row]`` parsed answer equals the ground truth.
        abs_error: ``[row]`` float64 ``|parsed - value|`` (NaN when nothing parsed).
        max_new_tokens: Most tokens generated per prompt.
        chat: Chat template argument given (None: the tokenizer's template if any).
        prepend_bos: ``prepend_bos`` given to the task's tokenizer call.
        provenance: Where the numbers came from (``extra`` has the generation route).
    """

    task: str
    task_description: str
    k: RowInts
    sample: RowInts
    n_prompt_tokens: RowInts
    output: tuple[str, ...]
    parsed: tuple[int | None, ...]
    answer: tuple[str, ...]
    correct: RowFlags
    abs_error: RowFloats
    max_new_tokens: int
    chat: bool | None
    prepend_bos: bool | None
    provenance: Provenance

    def __post_init__(self) -> None:
        n = int(self.k.shape[0])
        sizes = {
            "sample": self.sample.shape[0],
            "n_prompt_tokens": self.n_prompt_tokens.shape[0],
            "output": len(self.output),
            "parsed": len(self.parsed),
            "answer": len(self.answer),
            "correct": self.correct.shape[0],
            "abs_error": self.abs_error.shape[0],
        }
        wrong = {name: int(size) for name, size in sizes.items() if size != n}
        if wrong:
            raise ValueError(f"every column needs {n} rows (one per k), got {wrong}")
        self.parsed = tuple(None if p is None else int(p) for p in self.parsed)

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]], **fields: Any) -> "BehaviourResult":
        """Build from row dicts with the :data:`COLUMNS` keys (``task`` is taken once).

        Example:
            >>> from oversquash_lens.results import Provenance
            >>> prov = Provenance("m", "hooked", None, "float32", "cpu", "eager", None, "")
            >>> row = dict(task="count_ones", k=3, sample=0, n_prompt_tokens=5, output="3",
            ...            parsed=3, answer="3", correct=True, abs_error=0.0)
            >>> BehaviourResult.from_rows([row], task="count_ones", task_description="",
            ...     max_new_tokens=5, chat=None, prepend_bos=None, provenance=prov).accuracy()
            ... # doctest: +NORMALIZE_WHITESPACE
               k  n  accuracy  mean_abs_error  median_abs_error  unparsed
            0  3  1       1.0             0.0               0.0       0.0
        """

        def ints(key: str) -> torch.Tensor:
            return torch.tensor([int(r[key]) for r in rows], dtype=torch.long)

        errors = [math.nan if r["abs_error"] is None else float(r["abs_error"]) for r in rows]
        return cls(
            k=ints("k"),
            sample=ints("sample"),
            n_prompt_tokens=ints("n_prompt_tokens"),
            output=tuple(str(r["output"]) for r in rows),
            parsed=tuple(r["parsed"] for r in rows),
            answer=tuple(str(r["answer"]) for r in rows),
            correct=torch.tensor([bool(r["correct"]) for r in rows], dtype=torch.bool),
            abs_error=torch.tensor(errors, dtype=torch.float64),
            **fields,
        )

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row with the :data:`COLUMNS` keys (JSON-compatible)."""
        return [
            {
                "task": self.task,
                "k": int(self.k[i]),
                "sample": int(self.sample[i]),
                "n_prompt_tokens": int(self.n_prompt_tokens[i]),
                "output": self.output[i],
                "parsed": self.parsed[i],
                "answer": self.answer[i],
                "correct": bool(self.correct[i]),
                "abs_error": None if math.isnan(self.abs_error[i]) else float(self.abs_error[i]),
            }
            for i in range(int(self.k.shape[0]))
        ]

    def to_dataframe(self) -> Any:
        """One row per prompt; ``parsed`` and ``abs_error`` are missing when nothing parsed.

        Returns:
            ``pandas.DataFrame`` with the :data:`COLUMNS`.
        """
        import pandas as pd

        rows = self.rows()
        columns = {c: pd.Series([r[c] for r in rows], dtype=object) for c in COLUMNS}
        frame = pd.DataFrame(columns)  # parsed stays object: Python ints and None
        for column in ("k", "sample", "n_prompt_tokens"):
            frame[column] = frame[column].astype("int64")
        frame["correct"] = frame["correct"].astype(bool)
        frame["abs_error"] = frame["abs_error"].astype(float)  # None -> NaN
        frame["output"] = frame["output"].astype(str)
        frame["answer"] = frame["answer"].astype(str)
        return frame

    def accuracy(self) -> Any:
        """Per length: accuracy, mean / median absolute error (parsed answers), n, unparsed.

        Returns:
            ``pandas.DataFrame`` with columns k, n, accuracy, mean_abs_error,
            median_abs_error, unparsed (fraction of rows with nothing parsed), sorted by k.
        """
        import pandas as pd

        frame = self.to_dataframe()
        out = []
        for k, group in frame.groupby("k", sort=True):
            errors = group["abs_error"].dropna()
            out.append(
                {
                    "k": int(k),  # type: ignore[arg-type]
                    "n": len(group),
                    "accuracy": float(group["correct"].mean()),
                    "mean_abs_error": float(errors.mean()) if len(errors) else math.nan,
                    "median_abs_error": float(errors.median()) if len(errors) else math.nan,
                    "unparsed": float(group["parsed"].isna().mean()),
                }
            )
        columns = ["k", "n", "accuracy", "mean_abs_error", "median_abs_error", "unparsed"]
        return pd.DataFrame(out, columns=columns)

    def histogram(self, k: int | None = None) -> Any:
        """How often each parsed answer was given (Fig 4): at one length, or per length.

        Args:
            k: One length, or None for every length.

        Returns:
            ``pandas.DataFrame`` with columns k, parsed (None: nothing parsed), count,
            sorted by k then parsed value (unparsed last).
        """
        import pandas as pd

        if k is not None and k not in set(self.k.tolist()):
            raise ValueError(f"k={k} was not measured; measured: {sorted(set(self.k.tolist()))}")
        counts: dict[tuple[int, int | None], int] = {}
        for row_k, parsed in zip(self.k.tolist(), self.parsed, strict=True):
            if k is None or row_k == k:
                counts[row_k, parsed] = counts.get((row_k, parsed), 0) + 1
        keys = sorted(counts, key=lambda kv: (kv[0], kv[1] is None, kv[1] or 0))
        return pd.DataFrame(
            {
                "k": pd.Series([kk for kk, _ in keys], dtype="int64"),
                "parsed": pd.Series([p for _, p in keys], dtype=object),
                "count": pd.Series([counts[key] for key in keys], dtype="int64"),
            }
        )

    def headline(self) -> str:
        """Accuracy per length (up to eight lengths) and N*."""
        table = self.accuracy()
        pairs = [
            f"{int(k)}: {acc:.2f}" for k, acc in zip(table["k"], table["accuracy"], strict=True)
        ]
        shown = ", ".join(pairs[:8]) + (", …" if len(pairs) > 8 else "")
        n_star = failure_length(table["k"].tolist(), table["accuracy"].tolist())
        return f"{self.task_description}\naccuracy by length k {{{shown}}}; N* = {n_star}"

    def failure_length(self, threshold: float = 0.5) -> int | None:
        """N*: the shortest measured length from which every longer one fails.

        A length fails when its accuracy is below ``threshold``. The answer is itself a
        failing length (the first of the final run of failures), not the last good one.
        See :func:`failure_length`; None when the longest length still succeeds.
        """
        table = self.accuracy()
        return failure_length(table["k"].tolist(), table["accuracy"].tolist(), threshold)

    def plot(self, *, axes: Any = None) -> Any:
        """Accuracy and mean absolute error against length, side by side.

        Args:
            axes: Two matplotlib Axes to draw into (a new figure if None).

        Returns:
            The matplotlib Figure (the one the axes belong to, when given).
        """
        with style():
            return self._plot(axes)

    def _plot(self, axes: Any) -> Any:
        import matplotlib.pyplot as plt

        table = self.accuracy()
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        left, right = axes
        fig = left.figure
        marker = {"marker": "o"} if len(table) <= 40 else {}
        left.plot(table["k"], table["accuracy"], **marker)
        left.set_ylim(-0.05, 1.05)
        left.set_xlabel("length k")
        left.set_ylabel("accuracy")
        n_star = self.failure_length()
        if n_star is not None:
            left.axvline(n_star, color="grey", linestyle="--", label=f"N* = {n_star}")
            left.legend()
        right.plot(table["k"], table["mean_abs_error"], label="mean", **marker)
        right.plot(table["k"], table["median_abs_error"], label="median", linestyle="--")
        right.set_xlabel("length k")
        right.set_ylabel("absolute error (parsed answers)")
        right.legend()
        fig.suptitle(f"{self.task_description} — {self.provenance.model_name}", fontsize=9)
        fig.tight_layout()
        return fig

    def plot_histogram(self, k: int | None = None) -> Any:
        """Bars of the parsed answers' counts, one panel per length (Fig 4 style).

        Returns:
            The matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        table = self.histogram(k)
        ks = sorted(set(table["k"].tolist()))
        with style():
            fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3), squeeze=False)
            for ax, length in zip(axes[0], ks, strict=True):
                part = table[table["k"] == length]
                labels = ["none" if p is None else str(p) for p in part["parsed"]]
                ax.bar(range(len(labels)), part["count"].tolist())
                ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
                answers = {
                    a for kk, a in zip(self.k.tolist(), self.answer, strict=True) if kk == length
                }
                truth = ", ".join(sorted(answers)) if len(answers) <= 3 else "varies"
                ax.set_title(f"k = {length} (truth {truth})", fontsize=9)
                ax.set_xlabel("parsed answer")
                ax.grid(False, axis="x")
            axes[0][0].set_ylabel("count")
            fig.tight_layout()
        return fig
