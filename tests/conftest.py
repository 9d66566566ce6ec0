from collections.abc import Callable
from typing import Any

import pytest

import oversquash_lens as osl
from oversquash_lens._compat import available_backends

BACKENDS = available_backends()
TINY_MODELS = ["tiny-gpt2", "tiny-llama", "tiny-attn-only", "tiny-nope"]


@pytest.fixture(scope="session")
def load() -> Callable[..., Any]:
    """Session-wide model cache: load(name, backend, **kwargs) builds each model once.

    Tests that change a model must restore it (the hygiene tests check that they do);
    tests that break models on purpose call osl.load_model themselves.
    """
    cache: dict[tuple[Any, ...], Any] = {}

    def get(name: str, backend: str, **kwargs: Any) -> Any:
        key = (name, backend, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = osl.load_model(name, backend=backend, **kwargs)
        return cache[key]

    return get


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param
