"""The one registry behind models, precision formats, tasks and report suites."""

import pytest

import oversquash_lens as osl
from oversquash_lens import tasks
from oversquash_lens._errors import UnknownPrecisionError
from oversquash_lens._names import Registry
from oversquash_lens.models import _registry as models_registry
from oversquash_lens.precision import _formats
from oversquash_lens.reporting import SUITES, get_suite


def test_each_named_collection_is_the_same_registry() -> None:
    for registry in (models_registry._MODELS, _formats._REGISTRY, tasks.TASKS, SUITES):
        assert isinstance(registry, Registry)


def test_names_aliases_and_refusals() -> None:
    things = Registry("thing", fold_case=True)
    things.register("Alpha", 1, "a")
    assert (things["alpha"], things["A"], things.get("beta"), len(things)) == (1, 1, None, 1)
    assert list(things.items()) == [("Alpha", 1)]
    for name in ("ALPHA", "a"):
        with pytest.raises(ValueError, match="thing name .* is already registered"):
            things.register(name, 2)
    with pytest.raises(ValueError, match="'B' is already registered"):
        things.register("Beta", 2, "b", "B")  # a repeat inside one call is refused too
    assert "beta" not in things  # and nothing of the refused call was kept
    with pytest.raises(KeyError, match="unknown thing 'gamma': choose one of Alpha"):
        things["gamma"]


def test_each_collection_keeps_its_error_and_message() -> None:
    with pytest.raises(ValueError, match="unknown suite 'nope': choose one of paper, smoke"):
        get_suite("nope")
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        tasks.TASKS["nope"]
    with pytest.raises(UnknownPrecisionError, match="unknown precision 'nope'"):
        osl.get_format("nope")
    assert list(tasks.TASKS)[:2] == ["copy_last", "copy_first"]


def test_a_format_registered_with_capitals_is_found() -> None:
    # get_format lower-cases what it is asked; the registry folds case on both sides.
    fmt = osl.FloatFormat("Test_E6M9", 6, 9)
    _formats.register_format(fmt, "TE6M9")
    try:
        assert osl.get_format("Test_E6M9") is fmt and osl.get_format("te6m9") is fmt
        assert "Test_E6M9" in _formats.list_formats()
    finally:  # leave the process's registry as it was
        del _formats._REGISTRY._items["test_e6m9"], _formats._REGISTRY._names["test_e6m9"]
        del _formats._REGISTRY._aliases["te6m9"]
