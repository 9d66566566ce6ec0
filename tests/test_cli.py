"""The oversquash-lens command line, end to end on tiny models."""

import json
import subprocess
import sys

import pytest

from oversquash_lens._cli import main

from .conftest import BACKENDS


def test_models_lists_the_registry(capsys) -> None:
    assert main(["models"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    assert "tiny-nope" in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_on_a_tiny_model(capsys, backend: str) -> None:
    code = main(["demo", "--model", "tiny-llama", "--backend", backend, "--max-new-tokens", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "blocks.1.hook_resid_post" in out and "next-token prediction" in out
    assert main(["demo", "--model", "tiny-gpt2", "--backend", backend, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["norms"]) == 4 and len(report["top_next"]) == 5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--model", "tiny-gpt2", "--dtype", "float17"], "unknown precision"),
        (["demo", "--model", "tiny-gpt2", "--dtype", "float8_e4m3"], "emulate_precision"),
        (["demo", "--model", "tiny-gpt2", "--prompt", ""], "empty prompt"),
        (["demo", "--model", "tiny-gpt2", "--prompt", "1" * 1100], "n_ctx=1024"),
    ],
)
def test_bad_arguments_exit_2_with_advice(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unloadable_model_name(capsys) -> None:
    """HookedTransformer knows its official names (unknown name: usage error, 2); the
    bridge cannot tell an unknown name from a missing network (load failure, 1)."""
    code = main(["demo", "--model", "no-such-model-xyz"])
    err = capsys.readouterr().err
    assert "built-in" in err and "network" in err
    assert code == (2 if BACKENDS[0] == "hooked" else 1)


def test_argparse_errors_exit_2() -> None:
    bad = (["demo", "--backend", "keras"], ["frobnicate"], ["demo", "--max-new-tokens", "-1"])
    for argv in bad:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2


def test_console_script_help_shows_examples() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "oversquash_lens", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "examples:" in out.stdout
