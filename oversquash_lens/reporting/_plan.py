"""Which measurements a report suite runs, and at what sizes (``quick`` or full).

The ``"paper"`` suite follows the repository's scripts: Fig 5 (a)–(d) as in
``scripts/fig5_smollm2.py`` (the families live here, the script imports them), the
sensitivity/path profiles of ``scripts/flow_smollm2.py`` (prompts, depths and mass
shares live here too), and a precision sweep: the collapse length of Fig 5a in every
format against the 1/ε prediction of :meth:`CollapseResult.collapse_length`.

Sizes (measured on SmolLM2-135M, 1 CPU thread, see the report module): full mode
reads lengths 1..1000 of the nested families from one pass each and makes a pass per
length for the others at the Fig 5 lengths up to 1001; quick mode stops at 200.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import tasks
from .._errors import PromptTooLongError
from .._names import Registry

FIG5_LENGTHS = (1, 2, 6, 11, 51, 101, 501, 1001, 2001)
"""The lengths ``scripts/fig5_smollm2.py`` measures."""

FIG5_PRECISIONS = ("float32", "bfloat16", "emulate:float8_e4m3")
"""The precisions ``scripts/fig5_smollm2.py`` measures."""

REPORT_PRECISIONS = ("float32", "bfloat16")
"""Fig 5 precisions of the report (the paper's float32 vs bf16)."""

SWEEP_PRECISIONS = (
    "float32",
    "float16",
    "bfloat16",
    "emulate:float8_e4m3",
    "emulate:float8_e5m2",
)
"""The precision sweep: mantissa widths 23, 10, 7, 3, 2 bits (custom widths such as
``"emulate:e8m5"`` can be added with ``precisions=``; each costs two passes at the
largest length)."""

FIRST_DIGIT = "What is the first digit in this sequence?"
"""``scripts/flow_smollm2.py``: asks for the first digit of "01…1"."""

FLOW_PROMPTS = ("count_ones", "first_digit", "last_digit")
"""Prompts :func:`prompt_tokens` builds."""


def fig5_families(bos: bool) -> dict[str, Any]:
    """Fig 5 (a)–(d); (d) in both comma placements, since the paper does not say which.

    Example:
        >>> sorted(fig5_families(True))[:2]
        ['a_count_ones', 'b_random_digits']
    """
    return {
        "a_count_ones": tasks.repeated_last("1", prefix=tasks.COUNT_ONES, bos=bos),
        "b_random_digits": tasks.random_prefix(prefix=tasks.COUNT_ONES, bos=bos, seed=0),
        "c_copy_ones": tasks.repeated_last("1", prefix=tasks.COPY_NUMBER, bos=bos),
        "d_copy_commas_left": tasks.separated(
            "1", every=3, separator=",", group="left", prefix=tasks.COPY_NUMBER, bos=bos
        ),
        "d_copy_commas_right": tasks.separated(
            "1", every=3, separator=",", group="right", prefix=tasks.COPY_NUMBER, bos=bos
        ),
    }


FIG5_TITLES = {
    "a_count_ones": "(a) counting: ones, k vs k+1",
    "b_random_digits": "(b) counting: random digits, then 1 vs 11",
    "c_copy_ones": "(c) copying: ones, k vs k+1",
    "d_copy_commas_left": "(d) copying: ones with commas, grouped from the left",
    "d_copy_commas_right": "(d) copying: ones with commas, grouped from the right",
}


def depths(n_layers: int) -> list[Any]:
    """The first, middle and last block outputs, then y_n (each costs k backward passes).

    Example:
        >>> depths(30)
        [0, 14, 29, 'final']
    """
    return [*sorted({0, (n_layers - 1) // 2, n_layers - 1}), "final"]


def prompt_family(prompt: str) -> tuple[Any, int]:
    """The family behind a flow prompt, and how many tokens follow its repeated ones.

    Raises:
        ValueError: For a prompt not in :data:`FLOW_PROMPTS`.
    """
    if prompt == "count_ones":
        return tasks.repeated_last("1", prefix=tasks.COUNT_ONES), 0
    if prompt == "last_digit":
        return tasks.fixed_final("1", "0", prefix=tasks.LAST_DIGIT), 1
    if prompt == "first_digit":
        return tasks.repeated_last("1", prefix=FIRST_DIGIT + "0"), 0
    raise ValueError(f"unknown prompt {prompt!r}: choose one of {', '.join(FLOW_PROMPTS)}")


def prompt_tokens(model: Any, prompt: str, n: int) -> torch.Tensor:
    """Token ids ``[1, n]`` of a flow prompt with exactly ``n`` tokens (built by ``osl.tasks``).

    Raises:
        ValueError: If ``n`` is shorter than the prompt's fixed part.

    Example:
        >>> import oversquash_lens as osl
        >>> prompt_tokens(osl.load_model("tiny-gpt2"), "count_ones", 20).shape
        torch.Size([1, 20])
    """
    family, extra = prompt_family(prompt)
    base = len(family.pair(model, 1).a) - 1 - extra
    if n - base - extra < 1:
        raise ValueError(f"{prompt} needs at least {base + extra + 1} tokens, got n={n}")
    return family.pair(model, n - base - extra).a[None]


def shares(values: torch.Tensor) -> dict[str, float]:
    """Where a profile's mass sits (values over positions, normalized to sum 1).

    Example:
        >>> shares(torch.tensor([2.0, 1.0, 1.0]))["first"]
        0.5
    """
    p = values / values.sum()
    n = p.numel()
    third = max(n // 3, 1)
    return {
        "first": float(p[0]),
        "early": float(p[:third].sum()),
        "middle": float(p[third : n - third].sum()),
        "late": float(p[n - third :].sum()),
        "argmin": int(p.argmin()),
        "last": float(p[-1]),
    }


def fit_lengths(family: Any, model: Any, lengths: Sequence[int]) -> list[int]:
    """The lengths whose pairs fit the model's context (largest kept by bisection).

    Example:
        >>> import oversquash_lens as osl
        >>> fit_lengths(osl.tasks.ones(), osl.load_model("tiny-gpt2"), [1, 10, 5000])[-1]
        1022
    """
    wanted = sorted(set(int(k) for k in lengths))

    def fits(k: int) -> bool:
        try:
            family.pairs(model, [k])
        except PromptTooLongError:
            return False
        return True

    if not wanted or fits(wanted[-1]):
        return wanted
    low, high = 1, wanted[-1]  # fits(low) assumed; fits(high) is False
    if not fits(low):
        return []
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return sorted({k for k in wanted if k <= low} | {low})


# ---------------------------------------------------------------- steps
@dataclass(frozen=True)
class CollapseStep:
    """``osl.collapse`` on one family (one panel of Fig 5).

    Attributes:
        key: File stem and summary key.
        title: Section heading.
        family: Builds the family (called when the step runs).
        lengths: Lengths asked for (cut to the model's context when run).
        precisions: Precisions measured.
        plot_precisions: The precisions the Fig 5 panel shows.
        sweep: Also report the collapse length of every precision against 1/ε.
    """

    key: str
    title: str
    family: Callable[[], Any]
    lengths: tuple[int, ...]
    precisions: tuple[str, ...]
    plot_precisions: tuple[str, ...]
    sweep: bool = False


@dataclass(frozen=True)
class TraceStep:
    """``osl.trace`` (sensitivity beside the path bound) on one flow prompt of ``n`` tokens."""

    key: str
    title: str
    prompt: str
    n: int
    probes: int
    layers: Callable[[int], list[Any]]


@dataclass(frozen=True)
class BehaviourStep:
    """Greedy answers against length (``osl.behaviour``), when the package has it."""

    key: str
    title: str
    task: str
    lengths: tuple[int, ...]
    samples: int
    max_new_tokens: int | None


@dataclass(frozen=True)
class GlassesStep:
    """``osl.compare_glasses`` on one task: collapse and relevant-token sensitivity per variant."""

    key: str
    title: str
    task: str
    lengths: tuple[int, ...]
    variants: tuple[str, ...]
    precision: str
    probes: int


Step = CollapseStep | TraceStep | BehaviourStep | GlassesStep


@dataclass(frozen=True)
class Suite:
    """The steps of a report, in the order they run."""

    name: str
    quick: bool
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


SIZES: dict[str, dict[str, int]] = {
    "full": {"top": 1000, "n": 256, "probes": 16},
    "quick": {"top": 200, "n": 64, "probes": 8},
    "smoke": {"top": 8, "n": 16, "probes": 2},
}
"""Largest length, flow prompt tokens and Hutchinson probes of each size."""


def paper_suite(
    *, quick: bool = False, precisions: Sequence[str] | None = None, size: str | None = None
) -> Suite:
    """The paper's measurements: Fig 5 (a)–(d), flow profiles, precision sweep, behaviour.

    Args:
        quick: Lengths up to 200 and 64-token flow prompts (about 1 minute on SmolLM2)
            instead of lengths up to 1000 and 256-token prompts.
        precisions: Fig 5 precisions (default :data:`REPORT_PRECISIONS`); the sweep adds
            :data:`SWEEP_PRECISIONS` to panel (a).
        size: ``"full"``, ``"quick"`` or ``"smoke"`` (lengths up to 8, for tests and
            examples); overrides ``quick``.

    Example:
        >>> [s.key for s in paper_suite(quick=True).steps][:3]
        ['fig5_a_count_ones', 'fig5_b_random_digits', 'fig5_c_copy_ones']
    """
    size = size or ("quick" if quick else "full")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    top, n, probes = SIZES[size]["top"], SIZES[size]["n"], SIZES[size]["probes"]
    main = tuple(precisions) if precisions else REPORT_PRECISIONS
    sweep = main + tuple(p for p in SWEEP_PRECISIONS if p not in main)
    dense = tuple(range(1, top + 1))  # nested families: one pass serves every length
    sparse = tuple(sorted({k for k in FIG5_LENGTHS if k <= top} | {top + 1}))
    families = fig5_families(True)
    steps: list[Step] = []
    for name, family in families.items():
        steps.append(
            CollapseStep(
                key=f"fig5_{name}",
                title=f"Fig 5{FIG5_TITLES[name]}",
                family=lambda f=family: f,
                lengths=dense if family.nested else sparse,
                precisions=sweep if name == "a_count_ones" else main,
                plot_precisions=main,
                sweep=name == "a_count_ones",
            )
        )
    for prompt in ("count_ones", "last_digit"):
        steps.append(
            TraceStep(
                key=f"flow_{prompt}_{n}",
                title=f"Sensitivity and attention paths: {prompt}, n = {n}",
                prompt=prompt,
                n=n,
                probes=probes,
                layers=depths if size == "full" else (lambda _: ["final"]),
            )
        )
    steps += behaviour_steps(size)
    steps += glasses_steps(size)
    return Suite("paper" if size != "smoke" else "smoke", size != "full", tuple(steps))


def smoke_suite(*, quick: bool = True, precisions: Sequence[str] | None = None) -> Suite:
    """The paper suite at toy sizes (lengths up to 8): seconds on a tiny model.

    Example:
        >>> smoke_suite().steps[0].lengths
        (1, 2, 3, 4, 5, 6, 7, 8)
    """
    return paper_suite(precisions=precisions, size="smoke")


BEHAVIOUR_TASKS = ("copy_last", "copy_first", "count_ones")
"""Tasks of the behaviour steps (Fig 2 copying, Fig 3 counting)."""


def behaviour_steps(size: str) -> list[Step]:
    """Greedy-answer accuracy against length (``osl.behaviour``), one step per task.

    The paper's tasks are deterministic (one prompt per length), so one sample each.
    """
    lengths = {
        "full": (1, 2, 5, 10, 20, 50, 100, 200),
        "quick": (1, 5, 20),
    }.get(size, (1, 2))
    return [
        BehaviourStep(
            key=f"behaviour_{task}",
            title=f"Behaviour: {task.replace('_', ' ')}, greedy answers against length",
            task=task,
            lengths=lengths,
            samples=1,
            max_new_tokens=None,
        )
        for task in BEHAVIOUR_TASKS
    ]


GLASSES_VARIANTS = ("baseline", "sep:3:left", "sep:3:right", "hint")
"""Variants of the glasses step (Fig 5d's commas in both placements, Fig 2b's hint)."""


def glasses_steps(size: str) -> list[Step]:
    """The glasses on copy_last: y_n distance of k vs k+1 and the final "0"'s sensitivity.

    Behaviour is left to the behaviour steps (``behaviour=False``), so this costs two
    forward passes and a few backward passes per variant and length.

    The quick report leaves it out (its 2-minute budget is spent by then).

    Example:
        >>> glasses_steps("full")[0].lengths
        (20, 80, 200)
        >>> glasses_steps("quick")
        []
    """
    if size == "quick":
        return []  # the quick report's 2-minute budget has no room left for it
    lengths = (20, 80, 200) if size == "full" else (2, 4)
    return [
        GlassesStep(
            key="glasses_copy_last",
            title="The glasses: separators and the hint on copy_last (bfloat16)",
            task="copy_last",
            lengths=lengths,
            variants=GLASSES_VARIANTS,
            precision="bfloat16",
            probes=SIZES[size]["probes"],
        )
    ]


SUITES: Registry[Callable[..., Suite]] = Registry("suite", missing=ValueError)
"""Report suites by name."""
SUITES.register("paper", paper_suite)
SUITES.register("smoke", smoke_suite)


def get_suite(name: str, *, quick: bool = False, precisions: Sequence[str] | None = None) -> Suite:
    """A suite by name.

    Raises:
        ValueError: For an unknown name, listing the known ones.

    Example:
        >>> get_suite("paper", quick=True).quick
        True
    """
    return SUITES[name](quick=quick, precisions=precisions)
