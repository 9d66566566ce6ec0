"""The oversquash-lens command line, end to end on tiny models."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import oversquash_lens as osl
from oversquash_lens._behaviour_result import BehaviourResult
from oversquash_lens._cli import main
from oversquash_lens._cli_args import EXAMPLES, parse_lengths, parse_precisions

from .conftest import BACKENDS

SUBCOMMANDS = ["trace", "paths", "sensitivity", "collapse", "behaviour", "report", "models", "demo"]


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


# ---------------------------------------------------------------- value parsers
@pytest.mark.parametrize(
    "text, expected",
    [
        ("1:5", [1, 2, 3, 4, 5]),
        ("1:200:50", [1, 51, 101, 151]),
        ("2:8:3", [2, 5, 8]),  # STOP included when the step reaches it
        ("7", [7]),
        ("7:7", [7]),
        ("1,2,4,8", [1, 2, 4, 8]),
        (" 3, 1 ,2 ", [3, 1, 2]),
    ],
)
def test_lengths_syntax(text: str, expected: list[int]) -> None:
    assert parse_lengths(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("5:1", "STOP must be >= START"),
        ("1:10:0", "step must be >= 1"),
        ("0:3", "lengths must be >= 1"),
        ("1,-2", "lengths must be >= 1"),
        ("a:b", "START:STOP[:STEP]"),
        ("1:2:3:4", "START:STOP[:STEP]"),
        (",", "no lengths"),
    ],
)
def test_bad_lengths_say_the_syntax(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace("[", r"\[")):
        parse_lengths(text)


def test_precisions_flatten_commas_and_repeats() -> None:
    assert parse_precisions(None) is None
    assert parse_precisions(["float32, bfloat16", "emulate:e5m3"]) == [
        "float32",
        "bfloat16",
        "emulate:e5m3",
    ]


# ---------------------------------------------------------------- each subcommand
@pytest.mark.parametrize("backend", BACKENDS)
def test_collapse_text_json_and_files(capsys, tmp_path: Path, backend: str) -> None:
    base = ["collapse", "--model", "tiny-gpt2", "--backend", backend, "--lengths", "1:40:13"]
    assert main([*base, "--precision", "float32,emulate:bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "collapse k (bits)" in out and "emulate:bfloat16" in out
    argv = [*base, "--precision", "float32", "--json", "--out", str(tmp_path)]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["lengths"] == [1, 14, 27, 40]
    assert [r["precision"] for r in payload["rows"]] == ["float32"]
    saved = osl.CollapseResult.load(tmp_path / "collapse.npz")
    assert saved.lengths == (1, 14, 27, 40)
    # the numbers printed are the result's own
    y_n = saved.curve("float32")[-1].item()
    assert payload["rows"][0]["y_n L∞ at k_max"] == pytest.approx(y_n, rel=0, abs=0)
    assert (tmp_path / "collapse.png").stat().st_size > 0
    assert (tmp_path / "collapse.svg").stat().st_size > 0


@pytest.mark.parametrize("family", ["fixed_final", "random_prefix", "separated"])
def test_collapse_families(capsys, family: str) -> None:
    argv = ["collapse", "--model", "tiny-gpt2", "--family", family, "--lengths", "1,3", "--json"]
    assert main([*argv, "--backend", BACKENDS[0], "--prefix", "copy_number"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["family"]["prefix"] == osl.tasks.COPY_NUMBER


@pytest.mark.parametrize("backend", BACKENDS)
def test_trace_paths_sensitivity(capsys, tmp_path: Path, backend: str) -> None:
    common = ["--model", "tiny-llama", "--backend", backend, "--json"]
    argv = ["trace", *common, "--task", "count_ones", "--n", "24", "--out", str(tmp_path)]
    assert main(argv) == 0
    trace = json.loads(capsys.readouterr().out)
    assert trace["n_tokens"] == 24
    assert {r["what"] for r in trace["rows"]} == {"sensitivity", "paths"}
    flow = osl.FlowResult.load(tmp_path / "trace.npz")
    assert trace["rows"][0]["spearman"] == pytest.approx(float(flow.spearman[0, -1]), abs=0)
    assert (tmp_path / "trace_profile.png").exists()

    assert main(["paths", *common, "--prompt", "1 1 1 1 1", "--out", str(tmp_path)]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in paths["rows"]] == [0, 1]
    shares = [r["early"] + r["middle"] + r["late"] for r in paths["rows"]]
    assert shares == pytest.approx([1.0, 1.0], abs=1e-9)  # thirds partition the mass
    assert osl.PathResult.load(tmp_path / "paths.npz").weights.shape[-1] == paths["n_tokens"]
    assert paths["product_dtype"] == "float64" and 0 < paths["rounding_relative"] < 1e-13
    assert main(["paths", *common, "--prompt", "1 1 1", "--product-dtype", "float32"]) == 0
    low = json.loads(capsys.readouterr().out)
    assert low["product_dtype"] == "float32" and 1e-8 < low["rounding_relative"] < 1e-5

    argv = ["sensitivity", *common, "--task", "last_digit", "--n", "20", "--layers", "0,final"]
    assert main([*argv, "--method", "exact"]) == 0
    sens = json.loads(capsys.readouterr().out)
    points = [r["point"] for r in sens["rows"]]
    assert points == ["blocks.0.hook_resid_post", "ln_final.hook_normalized"]


def test_text_output_is_a_table(capsys) -> None:
    assert main(["paths", "--model", "tiny-gpt2", "--backend", BACKENDS[0], "--n", "12"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["layer", "first", "early"] and len(lines) == 4


def test_behaviour_runs_the_task_by_name(capsys, tmp_path: Path) -> None:
    argv = ["behaviour", "--model", "tiny-gpt2", "--backend", BACKENDS[0], "--json"]
    options = ["--lengths", "1,3", "--samples", "1", "--max-new-tokens", "2"]
    assert main([*argv, "--task", "copy_last", *options, "--out", str(tmp_path)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["k"] for r in payload["accuracy"]] == [1, 3]
    saved = BehaviourResult.load(tmp_path / "behaviour.npz")
    assert [r["output"] for r in payload["rows"]] == list(saved.output)
    assert main([*argv, "--task", "no_such_task"]) == 2
    assert "unknown task 'no_such_task': choose one of copy_last" in capsys.readouterr().err


def test_behaviour_uses_the_compact_style_on_the_toy_models(capsys) -> None:
    argv = ["behaviour", "--model", "toy-copy", "--backend", BACKENDS[0], "--json"]
    assert main([*argv, "--task", "copy_first", "--lengths", "8", "--samples", "1"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"][0]["output"].strip() == "0"  # trained: "F:0…1=" -> "0"
    assert payload["accuracy"][0]["accuracy"] == 1.0
    assert main([*argv, "--task", "count_word", "--style", "compact"]) == 2
    assert "task 'count_word' in compact style" in capsys.readouterr().err


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--model", "tiny-gpt2", "--dtype", "float17"], "unknown precision"),
        (["demo", "--model", "tiny-gpt2", "--dtype", "float8_e4m3"], "emulate_precision"),
        (["demo", "--model", "tiny-gpt2", "--prompt", ""], "empty prompt"),
        (["demo", "--model", "tiny-gpt2", "--prompt", "1" * 1100], "n_ctx=1024"),
        (["demo", "--max-new-tokens", "-1"], "--max-new-tokens must be >= 0"),
        (["collapse", "--model", "tiny-gpt2", "--precision", "float17"], "float32, float16"),
        (["collapse", "--model", "tiny-gpt2", "--lengths", "1,3000"], "n_ctx=1024"),
        (["report", "--model", "tiny-gpt2", "--precision", "e99m3"], "exponent_bits must be"),
        (["report", "--model", "tiny-gpt2", "--suite", "nope"], "choose one of paper"),
        (["trace", "--model", "tiny-gpt2", "--n", "5000"], "n_ctx=1024"),
        (["trace", "--model", "tiny-gpt2", "--n", "3"], "raise --n"),
        (["paths", "--model", "tiny-gpt2", "--prompt", "1", "--task", "count_ones"], "not both"),
        (["trace", "--model", "tiny-gpt2", "--layers", "0,top"], "--layers"),
        (["paths", "--model", "tiny-gpt2", "--prompt", "1" * 1100], "n_ctx=1024"),
    ],
)
def test_bad_arguments_exit_2_with_advice(capsys, argv: list[str], message: str) -> None:
    assert main([*argv, "--backend", BACKENDS[0]]) == 2
    assert message in capsys.readouterr().err


def test_unknown_model_lists_the_built_in_names(capsys) -> None:
    """HookedTransformer knows its official names (unknown name: usage error, 2); the
    bridge cannot tell an unknown name from a missing network (load failure, 1)."""
    code = main(["collapse", "--model", "no-such-model-xyz", "--backend", BACKENDS[0]])
    err = capsys.readouterr().err
    assert "built-in" in err and "network" in err and "tiny-gpt2" in err
    assert code == (2 if BACKENDS[0] == "hooked" else 1)


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--backend", "keras"],
        ["frobnicate"],
        ["collapse", "--lengths", "5:1"],
        ["collapse", "--family", "fibonacci"],
        ["trace", "--probes", "0"],
        ["trace", "--task", "sum"],
    ],
)
def test_argparse_errors_exit_2(capsys, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_console_script_exit_codes_and_help() -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "oversquash_lens", *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    out = run("--help")
    assert out.returncode == 0 and "examples:" in out.stdout
    assert all(name in out.stdout for name in SUBCOMMANDS)
    bad = run("collapse", "--lengths", "5:1")
    assert bad.returncode == 2 and "STOP must be >= START" in bad.stderr
    good = run("models", "--json")
    assert good.returncode == 0 and "tiny-gpt2" in json.loads(good.stdout)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_has_examples(capsys, command: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "examples:" in out and f"oversquash-lens {command}" in out
    assert EXAMPLES[command].splitlines()[1].strip() in out
