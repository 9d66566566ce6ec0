"""A Ctrl-C at any line of a capture context's set-up or teardown leaves the model as it was.

Each test first counts the lines the package executes while a context is entered and left
(its set-up, the body, its teardown), then repeats the whole thing once per line with a
``KeyboardInterrupt`` raised exactly there (from a ``sys.settrace`` function, the way an
interrupt arrives between two lines). After every interrupted attempt the model must be
exactly as before: the same hooks at every module and hook point, the same tensors
(storage and dtype), modes, grad flags, attention kernel, no precision label, and the
same logits, also after ``reset_hooks()`` (permanent rounding hooks would survive it).
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import capture
from oversquash_lens._adapter import ModelAdapter
from oversquash_lens._tensors import weights_digest

from .conftest import BACKENDS
from .helpers import hook_registry, state_of

PACKAGE = Path(osl.__file__).parent
# The modules whose lines are interrupted: every context manager that changes a model.
TRACED = {p for p in (PACKAGE / "capture").glob("_*.py") if p.name != "__init__.py"} | {
    PACKAGE / "_adapter.py",
    PACKAGE / "_attach.py",
}
assert PACKAGE / "capture" / "_kernel.py" in TRACED  # the attention-kernel switch
TRACED_NAMES = {str(p) for p in TRACED}


class Injector:
    """Records line events in the traced modules, raising KeyboardInterrupt at one of them."""

    def __init__(self, at: int | None) -> None:
        self.at, self.lines = at, []

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename not in TRACED_NAMES:
            return None  # no line events for other modules (torch, TransformerLens)
        if event == "line":
            self.lines.append((frame.f_code.co_filename, frame.f_lineno))
            if len(self.lines) == self.at:
                raise KeyboardInterrupt(f"injected at line event {self.at}")
        return self


def run_traced(model: Any, action: Callable[[], None], at: int | None) -> Injector:
    forget_probes(model)  # every attempt runs the same lines, probe passes included
    injector = Injector(at)
    sys.settrace(injector)
    try:
        action()
    finally:
        sys.settrace(None)
    return injector


def forget_probes(model: Any) -> None:
    from oversquash_lens import _adapter, _probes
    from oversquash_lens.capture import _runs

    for cache in (_adapter._FIRED, _probes._CAUSAL, _runs._TRANSFORMS):
        cache.pop(model, None)


def injection_points(lines: list[tuple[str, int]]) -> list[int]:
    """1-based line events to interrupt at: the first and last run of every source line.

    Every line of set-up and teardown is interrupted at least once, and every loop both
    on its first and its last pass, without repeating the middle passes of long loops.
    """
    first: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    for index, line in enumerate(lines, start=1):
        first.setdefault(line, index)
        last[line] = index
    return sorted(set(first.values()) | set(last.values()))


def snapshot(model: Any) -> dict[str, Any]:
    adapter = ModelAdapter(model)
    return {
        "hooks": hook_registry(model, warm_up=False),
        "state": state_of(model),
        "attention": adapter.attention_implementation,
        "precision": capture.active_precision(model),
        "probing": capture._hooks.probing(model),
        "weights": weights_digest(model),
    }


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([[1, 2, 3, 4]], device=model.W_E.device))


def check_every_line(model: Any, action: Callable[[], None]) -> int:
    """Interrupt ``action`` at each of its lines in turn; the model must come back intact."""
    hook_registry(model)  # warm-up: the bridge and transformers add their own hooks once
    before, reference = snapshot(model), logits(model)
    lines = run_traced(model, action, None).lines
    assert lines, "the traced modules ran no line: is the tracer looking at them?"
    assert snapshot(model) == before
    points = injection_points(lines)
    for at in points:
        with pytest.raises(KeyboardInterrupt):
            run_traced(model, action, at)
        where = f"line {lines[at - 1][1]} of {Path(lines[at - 1][0]).name}"
        assert snapshot(model) == before, f"state changed after an interrupt at {where}"
        torch.testing.assert_close(logits(model), reference, rtol=0, atol=0)
        model.reset_hooks()
        torch.testing.assert_close(logits(model), reference, rtol=0, atol=0)
    return len(points)


def noop(activation: torch.Tensor, hook: Any) -> None:
    return None


def contexts(model: Any) -> dict[str, Callable[[], None]]:
    names = ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]

    def enter(make: Callable[[], Any]) -> Callable[[], None]:
        def action() -> None:
            with make():
                pass

        return action

    return {
        "hooks first": enter(
            lambda: capture.hooks(model, [(n, noop) for n in names], order="first")
        ),
        "hooks last, fwd and bwd": enter(
            lambda: capture.hooks(
                model, [(n, noop) for n in names], [(names[1], noop)], order="last"
            )
        ),
        "record": enter(lambda: osl.record(model, names)),
        "intervene": enter(lambda: osl.intervene(model, [(names[0], noop)])),
        "emulate_precision": enter(
            lambda: osl.emulate_precision(model, "bfloat16", points="residual+attention")
        ),
        "native_dtype": enter(lambda: osl.native_dtype(model, "bfloat16")),
        "preserve_state": enter(lambda: osl.preserve_state(model)),
        "frozen_parameters": enter(lambda: capture.frozen_parameters(model)),
        "run_boundaries": enter(
            lambda: capture.run_boundaries(model, print, lambda: None, print, print)
        ),
        "fired_hooks": lambda: capture.fired_hooks(
            model, names, torch.zeros((1, 2), dtype=torch.long, device=model.W_E.device)
        ),
        "attach": enter(lambda: osl.attach(model, osl.ResidualNorms(), osl.CollapseProbe())),
    }


CONTEXTS = list(contexts(None))


@pytest.mark.parametrize("name", CONTEXTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_interrupt_at_any_line_leaves_the_model_as_it_was(backend: str, name: str) -> None:
    model = osl.load_model("tiny-llama", backend=backend)
    total = check_every_line(model, contexts(model)[name])
    assert total >= 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_interrupt_inside_a_recorded_run_leaves_the_model_as_it_was(backend: str) -> None:
    """Interrupted anywhere: set-up, the analyzers' hooks during the pass, or teardown."""
    model = osl.load_model("tiny-gpt2", backend=backend)
    tokens = torch.tensor([[1, 2, 3]])

    def action() -> None:
        with (
            osl.emulate_precision(model, "bfloat16"),
            osl.attach(model, osl.AttentionPaths(), osl.CollapseProbe(heads=False)),
        ):
            model(tokens)

    assert check_every_line(model, action) >= 20


def test_an_interrupt_while_switching_attention_kernels() -> None:
    """A bridge over SDPA attention is switched to eager and back, even if interrupted."""
    from .test_adapter import sdpa_bridge

    model = sdpa_bridge("sdpa")
    model.original_model.set_attn_implementation("sdpa")  # TransformerLens 4 boots eager
    adapter = ModelAdapter(model)
    assert adapter.attention_implementation == "sdpa"

    def action() -> None:
        with adapter.eager_attention():
            pass

    assert check_every_line(model, action) >= 3
    assert adapter.attention_implementation == "sdpa"
