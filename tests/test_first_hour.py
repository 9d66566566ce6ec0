"""What a newcomer meets in the first hour: results, pictures and the CLI say what they do.

One test per inconsistency a new user ran into: results kept attached to autograd, plot
methods returning different types, ``render.page`` returning a string, unreadable reprs,
undocumented fields, the ``"eps"`` spelling, N*'s documentation, the CLI's promises and
the pictures (Fig 5's markers, noise floor and bands; the collapse-pair page).
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import render
from oversquash_lens._behaviour_result import failure_length
from oversquash_lens._cli import main
from oversquash_lens._cli_args import build_parser
from oversquash_lens.results._base import _RESULT_TYPES

matplotlib.use("Agg")
MODEL = "tiny-gpt2"


@pytest.fixture(scope="module")
def model() -> Any:
    return osl.load_model(MODEL)


@pytest.fixture(scope="module")
def results(model: Any) -> dict[str, Any]:
    """One real result of every kind, computed on the tiny model."""
    tokens = model.to_tokens("1 1 1 1 1 1")
    with osl.attach(model, osl.ResidualNorms(), osl.CollapseProbe()) as rec:
        model(tokens)
        model(model.to_tokens("1 1 1 1 1"))
    task = osl.tasks.copy_last(style="compact")
    return {
        "residual": rec.result("ResidualNorms"),
        "representations": rec.result("CollapseProbe"),
        "pair": rec.compare(0, 1),
        "paths": osl.attention_paths(model, tokens),
        "sensitivity": osl.sensitivity(model, tokens, method="exact"),
        "flow": osl.trace(model, tokens, path_methods=["bound"], attention="full"),
        "collapse": osl.collapse(
            model, osl.tasks.ones(), range(1, 60), ["float32", "bfloat16"], progress=False
        ),
        "behaviour": osl.behaviour(model, task, [2, 4], samples=2, progress=False),
        "glasses": osl.compare_glasses(
            model, task, [2, 3], variants=["baseline", "hint"], samples=1, progress=False
        ),
        "search": osl.separator_search(model, task, 4, spacings=(1, 2), progress=False),
    }


# ---------------------------------------------------------------------- detached
def test_results_of_a_pass_with_gradients_are_detached(model: Any) -> None:
    with osl.attach(model, osl.AttentionPaths(), osl.Sensitivity()) as rec:
        model(model.to_tokens("1 1 1 1"))  # gradients on: the README's own pass
    for name in ("AttentionPaths", "Sensitivity"):
        result = rec.result(name)
        tensors = [v for v in vars(result).values() if isinstance(v, torch.Tensor)]
        assert tensors and not any(t.requires_grad for t in tensors), name
        result.to_dataframe()  # raised "Can't call numpy() on Tensor that requires grad"


# ---------------------------------------------------------------------- one plot type
def plot_calls(results: dict[str, Any]) -> list[tuple[str, Any]]:
    flow = results["flow"]
    return [
        ("residual.plot", results["residual"].plot),
        ("paths.plot", results["paths"].plot),
        ("sensitivity.plot", results["sensitivity"].plot),
        ("sensitivity.plot heatmap", lambda: results["sensitivity"].plot(kind="heatmap")),
        ("collapse.plot", results["collapse"].plot),
        ("flow.plot", flow.plot),
        ("flow.plot_profile", flow.plot_profile),
        ("flow.plot_heatmap", flow.plot_heatmap),
        ("flow.plot_agreement", flow.plot_agreement),
        ("flow.plot_scatter", flow.plot_scatter),
        ("behaviour.plot", results["behaviour"].plot),
        ("behaviour.plot_histogram", results["behaviour"].plot_histogram),
        ("glasses.plot", results["glasses"].plot),
        ("search.plot", results["search"].plot),
        ("pair.plot", results["pair"].plot),
    ]


def test_every_plot_returns_a_figure(results: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    kinds = {name: type(call()).__name__ for name, call in plot_calls(results)}
    plt.close("all")
    assert all(kind == Figure.__name__ for kind in kinds.values()), kinds


def test_a_plot_into_given_axes_returns_their_figure(results: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert results["collapse"].plot(ax=ax) is fig
    assert results["flow"].plot_profile(ax) is fig
    assert results["search"].plot(ax=ax) is fig and results["pair"].plot(ax=ax) is fig
    fig2, axes = plt.subplots(1, 2)
    assert results["behaviour"].plot(axes=axes) is fig2
    plt.close("all")


# ---------------------------------------------------------------------- views
def test_page_is_a_view_like_the_others(tmp_path: Path) -> None:
    view = render.colored_tokens(["<bos>", "1"], [0.5, 1.0])
    page = render.page([view, "<p>notes</p>"], title="mine")
    assert isinstance(page, render.Page)
    path = page.save_html(tmp_path / "page")
    assert path.suffix == ".html" and path.read_text(encoding="utf-8") == page.html()
    cell = page._repr_html_()
    assert cell.count(render.bundle()) == 1 and "<p>notes</p>" in cell
    assert str(page) == page.html()
    with pytest.raises(TypeError, match="or HTML strings"):
        render.page([view, 3], title="mine")  # type: ignore[list-item]


# ---------------------------------------------------------------------- say what it holds
def test_every_result_prints_a_short_repr_with_its_headline(results: dict[str, Any]) -> None:
    for name, result in results.items():
        text = repr(result)
        lines = text.splitlines()
        assert len(lines) <= 14 and max(map(len, lines)) <= 200, (name, text)
        assert type(result).__name__ in lines[0] and "describe()" in text, name
    assert "best = " in repr(results["search"]) or "no spacing" in repr(results["search"])
    assert "bit-identical" in repr(results["collapse"])
    assert "N* =" in repr(results["behaviour"])
    assert "Spearman" in repr(results["flow"])


def test_every_result_field_is_documented(results: dict[str, Any]) -> None:
    from oversquash_lens.results._describe import field_docs

    ours = {n: c for n, c in _RESULT_TYPES.items() if c.__module__.startswith("oversquash_lens")}
    assert len(ours) >= 10  # every result class of the package (tests define their own)
    for name, cls in ours.items():
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{name}: fields without a line in 'Attributes:': {missing}"
    table = results["collapse"].describe()
    assert list(table.columns) == ["field", "value", "meaning"]
    assert table.set_index("field").loc["distances", "value"].startswith("float64[")


def test_collapse_length_says_what_it_holds(results: dict[str, Any]) -> None:
    found = results["collapse"].collapse_length("bfloat16", "bits")
    text = repr(found)
    assert "measured=" in text and len(text) < 200
    if found.measured is None:
        assert "never" in text


def test_recording_says_which_run_result_gives(model: Any) -> None:
    with osl.attach(model, osl.ResidualNorms()) as rec:
        model(model.to_tokens("1 1"))
        model(model.to_tokens("1 1 1"))
    assert "last run" in repr(rec)
    assert rec.result("ResidualNorms") is rec.results["ResidualNorms"][-1]


# ---------------------------------------------------------------------- names users type
def test_eps_is_accepted_for_epsilon(results: dict[str, Any], model: Any) -> None:
    col = results["collapse"]
    assert col.collapse_length("bfloat16", "eps") == col.collapse_length("bfloat16", "epsilon")
    task = osl.tasks.copy_last(style="compact")
    found = osl.separator_search(model, task, 3, spacings=(1,), criterion="eps", progress=False)
    assert found.criterion == "epsilon"


def test_failure_length_is_documented_as_what_it_returns() -> None:
    # 10 fails and so does every longer length: N* is 10, the first failing length
    assert failure_length([5, 10, 20], [1.0, 0.0, 0.0]) == 10
    for doc in (failure_length.__doc__, osl.BehaviourResult.failure_length.__doc__):
        assert doc is not None and "after which" not in doc
    assert "after which" not in (Path(__file__).parent.parent / "README.md").read_text()


# ---------------------------------------------------------------------- the CLI's promises
def test_every_model_command_takes_the_flags_the_readme_lists() -> None:
    parser = build_parser()
    common = ["--model", MODEL, "--backend", "hooked", "--dtype", "float32", "--device", "cpu"]
    common += ["--out", "x", "--json"]
    for command in ("trace", "paths", "sensitivity", "collapse", "behaviour", "report", "demo"):
        args = parser.parse_args([command, *common])
        assert args.out == "x" and args.json and args.model == MODEL, command
    assert parser.parse_args(["models", "--json"]).json


@pytest.mark.parametrize(
    "argv",
    [
        ["collapse", "--lengths", "1:4"],
        ["paths", "--prompt", "1 1 1"],
        ["sensitivity", "--prompt", "1 1 1", "--method", "exact"],
        [
            "behaviour",
            "--task",
            "copy_last",
            "--style",
            "compact",
            "--lengths",
            "2",
            "--samples",
            "1",
        ],
        ["demo", "--max-new-tokens", "2"],
    ],
    ids=lambda argv: argv[0],
)
def test_out_writes_the_summary_json_it_promises(
    argv: list[str], tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "out"
    assert main([*argv, "--model", MODEL, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert str(out / "summary.json") in printed["files"]
    printed.pop("files"), written.pop("files", None)
    assert written == printed


# ---------------------------------------------------------------------- pictures
def test_fig5_draws_no_marker_blob_and_says_a_zero_noise_floor(model: Any) -> None:
    import matplotlib.pyplot as plt

    many = osl.collapse(model, osl.tasks.ones(), range(1, 200), ["float32"], progress=False)
    few = osl.collapse(model, osl.tasks.ones(), range(1, 10), ["float32"], progress=False)
    ax = many.plot().axes[0]
    assert all(line.get_marker() in ("None", None, "") for line in ax.get_lines())
    assert any(line.get_marker() == "o" for line in few.plot().axes[0].get_lines())
    if not bool((torch.nan_to_num(many.head_noise[0]) > 0).any()):
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert any("noise floor: 0 at every length" in text for text in legend), legend
    plt.close("all")


def test_fig5_bands_keep_their_edges_visible(results: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    col = results["collapse"]
    ax = col.plot().axes[0]
    lines = [
        line
        for line in ax.get_lines()
        if "ε" not in str(line.get_label()) and "noise floor" not in str(line.get_label())
    ]
    # per precision: the mean over heads and the band's two edges, drawn above the fills
    assert len(lines) == 3 * len(col.precisions)
    fills = [c for c in ax.collections if c.get_zorder() < min(ln.get_zorder() for ln in lines)]
    assert len(fills) >= len(col.precisions)
    plt.close("all")


def test_collapse_pair_refuses_token_ids(results: dict[str, Any], model: Any) -> None:
    col = results["collapse"]
    pair = osl.tasks.ones().pair(model, 5)
    for wrong in ((pair.a, pair.b), (pair.a.tolist(), pair.b.tolist()), "1 1"):
        with pytest.raises(TypeError, match="to_str_tokens"):
            render.collapse_pair(col, k=5, tokens=wrong)  # type: ignore[arg-type]
    named = (model.to_str_tokens(pair.a), model.to_str_tokens(pair.b))
    assert "ColoredTokens" in render.collapse_pair(col, k=5, tokens=named).html()


def test_collapse_pair_page_heads_once_and_explains_v0_and_ulps(
    results: dict[str, Any],
) -> None:
    view = render.collapse_pair(results["collapse"], k=5, precision="float32")
    page = view.html()
    assert page.count(view.title) == 2  # the <title> and one heading, not two headings
    assert "<td>v(0) (last token&#x27;s embedding)</td>" in page
    assert "identical by construction" in page and "ULPs of float32" in page
    assert "2·10^9" in page  # the explanation sits under the column


# ---------------------------------------------------------------------- what the docs promise
def test_power_sensitivity_runs_as_the_readme_calls_it(model: Any) -> None:
    result = osl.sensitivity(model, "1 1 1 1", method="power")  # no norm= needed
    assert result.norm == "spectral"
    assert osl.sensitivity(model, "1 1 1 1", method="exact").norm == "fro"


def test_trace_heads_applies_to_the_proxies_that_combine_heads(model: Any) -> None:
    flow = osl.trace(model, "1 1 1 1 1", method="exact", heads="max", attention="full")
    assert "value" in flow.proxy_methods and "certified" in flow.proxy_methods


def test_behaviour_out_writes_its_figure(tmp_path: Path, capsys: Any) -> None:
    argv = ["behaviour", "--model", MODEL, "--task", "copy_last", "--style", "compact"]
    argv += ["--lengths", "2", "--samples", "1", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert any(f.endswith("behaviour.png") for f in files)
    assert (tmp_path / "behaviour.png").stat().st_size > 0
