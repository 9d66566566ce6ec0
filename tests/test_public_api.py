"""The curated public API: every exported name exists, nothing private leaks."""

import importlib

import pytest

import oversquash_lens as osl

PUBLIC_MODULES = [
    "oversquash_lens",
    "oversquash_lens.precision",
    "oversquash_lens.models",
    "oversquash_lens.analyzers",
    "oversquash_lens.results",
    "oversquash_lens.capture",
    "oversquash_lens.tasks",
    "oversquash_lens.theory",
    "oversquash_lens.render",
    "oversquash_lens.reporting",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_importable_and_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "duplicates in __all__"
    for name in exported:
        assert hasattr(module, name), name
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", module_name).startswith("oversquash")
    }
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert public - submodules <= exported | submodules


def test_import_is_cheap() -> None:
    """Importing the package must not load models or TransformerLens itself."""
    import subprocess
    import sys

    code = "import sys, oversquash_lens; print('transformer_lens' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_main_entry_points() -> None:
    for name in ["load_model", "attach", "ResidualNorms", "emulate_precision", "native_dtype"]:
        assert callable(getattr(osl, name))
