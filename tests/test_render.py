"""osl.render: pinned HTML snapshots, escaping, rounding, ids, atomic saves, figure style.

Snapshots live in tests/snapshots/; the circuitsvis bundle and its version are replaced
by placeholders before comparing, so a circuitsvis upgrade changes nothing there.
``OSL_UPDATE_SNAPSHOTS=1`` rewrites them (review the diff before committing).
"""

import html
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import oversquash_lens as osl
from oversquash_lens import render
from oversquash_lens.analyzers._collapse_probe import PairComparison
from oversquash_lens.render import _bundle, _page

from .conftest import BACKENDS
from .helpers import hook_registry, leftover_hooks, state_of

SNAPSHOTS = Path(__file__).parent / "snapshots"
TRICKY = ["<bos>", " a<b", "</script>", "&amp;", "x\u2028y", '"q"', "\\", "<!--"]


def provenance(name: str = "hand-made") -> osl.Provenance:
    return osl.Provenance(name, "hooked", None, "float32", "cpu", "eager", None, "test")


def path_result() -> osl.PathResult:
    weights = torch.tensor(
        [[[0.5, 0.25, 0.25], [0.125, 0.3333333, 0.5416667]]], dtype=torch.float64
    )
    uniform = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    return osl.PathResult(
        weights=weights,
        uniform=uniform,
        method="rollout",
        heads="mean",
        provenance=provenance(),
        str_tokens=("<bos>", " 1", " 1"),
    )


def sensitivity_result() -> osl.SensitivityResult:
    norms = torch.tensor([[[3.0, 1.5, 0.75], [2.0, 1e-5, 123456.0]]], dtype=torch.float64)
    return osl.SensitivityResult(
        norms=norms,
        stderr=None,
        points=("blocks.0.hook_resid_post", "ln_final.hook_normalized"),
        method="exact",
        norm="fro",
        probes=None,
        wrt="resid_pre0",
        wrt_hook="blocks.0.hook_resid_pre",
        position=-1,
        seed=None,
        tokens=None,
        str_tokens=("<bos>", " 1", " 1"),
        provenance=provenance(),
    )


def pair_comparison() -> PairComparison:
    distances = torch.tensor([[0.0] * 4, [0.5, 0.25, 0.125, 0.01], [1e-9, 1e-9, 1e-9, 0.0]])
    return PairComparison(
        points=("blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "ln_final.hook_normalized"),
        distances=distances.double(),
        head_layers=(0,),
        head_distances=torch.zeros(1, 2, 4, dtype=torch.float64),
        format="bfloat16",
        bitwise_equal=torch.tensor([True, False, True]),
        ulps=torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64),
        eps_ratio=torch.tensor([0.0, 16.0, 1.28e-7], dtype=torch.float64),
        argmax_a=7,
        argmax_b=-1,
        provenance=provenance(),
    )


def fixed_views() -> list[Any]:
    return [
        "<h2>Hand-made views</h2>",
        render.colored_tokens(TRICKY, [0.1, -0.2, 1.0, 0.3, 0.0, 2 / 3, math.pi, 1e-9]),
        render.colored_tokens_multi(["a", "<b>"], [[1, 2], [3.14159265, 4]], ["L0", "L<1>"]),
        render.flow_tokens(path_result(), kind="paths"),
        render.flow_tokens(sensitivity_result()),
        render.collapse_pair(
            pair_comparison(), tokens=(["<bos>", "1", "1"], ["<bos>", "1", "1", "1"])
        ),
    ]


def components(view: render.Rendered) -> list[render.Component]:
    return [part for part in view.parts if isinstance(part, render.Component)]


def normalized(text: str) -> str:
    """The page with the bundle and the circuitsvis version replaced by placeholders."""
    text = text.replace(render.bundle(), "/* circuitsvis bundle */")
    return text.replace(f"circuitsvis {_bundle.circuitsvis_version()} bundle", "circuitsvis bundle")


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("OSL_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"no snapshot {path}: run with OSL_UPDATE_SNAPSHOTS=1 and review it")
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} changed; if intended, rerun with OSL_UPDATE_SNAPSHOTS=1 and review the diff"
    )


# ---------------------------------------------------------------------- snapshots
def test_page_snapshot() -> None:
    text = render.page(fixed_views(), title="snapshot <page>").html()
    assert text.count(render.bundle()) == 1
    check_snapshot("page.html", normalized(text))


def test_fragment_snapshot() -> None:
    check_snapshot("fragment.html", fixed_views()[1].fragment("pinned"))


def test_same_views_give_the_same_page() -> None:
    assert (
        render.page(fixed_views(), title="t").html() == render.page(fixed_views(), title="t").html()
    )


# ---------------------------------------------------------------------- offline
def all_pages(model: Any) -> list[str]:
    views = [*fixed_views()[1:], render.attention_heads(model, "1 1 1")]
    pages = [render.page(fixed_views(), title="p").html()] + [v.html() for v in views]
    return pages + [v._repr_html_() for v in views]


def test_no_network_references(load: Any) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    for text in all_pages(model):
        # no external script, stylesheet, image or frame; only inline scripts
        assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", text, re.I)
        outside = text.replace(render.bundle(), "")
        assert "http://" not in outside and "https://" not in outside
        assert outside.count("<script>") == outside.count("</script>")


def test_bundle_is_script_safe() -> None:
    raw = _bundle.bundle_path().read_text(encoding="utf-8")
    safe = render.bundle()
    assert not re.search(r"</script", safe, re.I) and "<!--" not in safe
    # only the "</script" inside strings changed: one backslash per occurrence
    occurrences = len(re.findall(r"</script", raw, re.I)) + raw.count("<!--")
    assert len(safe) == len(raw) + occurrences


def test_missing_bundle_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    _bundle.bundle_path.cache_clear()
    monkeypatch.setattr(_bundle.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(osl.BackendUnavailableError, match="pip install circuitsvis"):
            _bundle.bundle_path()
    finally:
        _bundle.bundle_path.cache_clear()


# ---------------------------------------------------------------------- escaping
@pytest.mark.parametrize("token", TRICKY)
def test_script_json_round_trips_and_hides_markup(token: str) -> None:
    text = _page.script_json({"tokens": [token], "t": token})
    assert not set(text) & set("<>&\u2028\u2029")
    assert json.loads(text) == {"tokens": [token], "t": token}


def test_tokens_are_html_escaped_once() -> None:
    view = render.colored_tokens(TRICKY, torch.arange(len(TRICKY), dtype=torch.float32))
    props = components(view)[0].props
    assert [html.unescape(t) for t in props["tokens"]] == TRICKY
    assert props["tokens"][0] == "&lt;bos&gt;" and props["tokens"][3] == "&amp;amp;"
    fragment = view.fragment("v")
    assert fragment.count("</script>") == fragment.count("<script>") == 1
    script = re.search(r"<script>CircuitsVis\.render\((.*)\);</script>", fragment)
    assert script is not None
    args = json.loads(f"[{script.group(1).replace('CircuitsVis.ColoredTokens', 'null')}]")
    assert args[2]["tokens"] == props["tokens"]


def test_titles_labels_and_table_cells_are_escaped() -> None:
    view = render.colored_tokens(["a"], [1.0], title="<i>x</i>", caption="a & <b>")
    fragment = view.fragment("v")
    assert "<h3>&lt;i&gt;x&lt;/i&gt;</h3>" in fragment
    assert "a &amp; &lt;b&gt;" in fragment
    page = render.page([view], title="</title><script>").html()
    assert "<title>&lt;/title&gt;&lt;script&gt;</title>" in page
    table = render.collapse_pair(pair_comparison(), metric="l1").fragment("v")
    assert "<td>v(0) (last token&#x27;s embedding)</td>" in table
    assert "bitwise equal in bfloat16" in table


# ---------------------------------------------------------------------- rounding, size
def test_rounding_keeps_four_significant_digits() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(500, generator=generator, dtype=torch.float64)
    values = values * 10.0 ** torch.randint(-12, 12, (500,), generator=generator)
    for value, kept in zip(values.tolist(), _page.rounded(values), strict=True):
        # closed form: error at most half a unit in the 4th significant digit
        unit = 10.0 ** (math.floor(math.log10(abs(value))) - 3)
        assert abs(kept - value) <= unit / 2 * (1 + 1e-9)
    assert _page.rounded([float("nan"), float("inf"), 0.0, 1.0, -2.0]) == [None, None, 0, 1, -2]
    assert _page.rounded(torch.tensor([[1 / 3]])) == [[0.3333]]


def test_views_send_only_what_is_shown(load: Any) -> None:
    n = 1000
    view = render.colored_tokens([f"t{i}" for i in range(n)], torch.rand(n, dtype=torch.float64))
    # per token: a value of <= 4 significant digits (~7 chars) + the token (~7 chars)
    assert len(view.fragment("v")) < n * 18
    model = load("tiny-gpt2", BACKENDS[0])
    prompt = " ".join(["1"] * 30)
    heads = render.attention_heads(model, prompt, layers=[1], heads=[0], max_tokens=8)
    props = components(heads)[0].props
    assert len(props["attention"]) == 1 and len(props["attention"][0]) == 8
    assert all(len(row) == 8 for row in props["attention"][0])
    assert len(props["tokens"]) == 8
    paths = components(heads)[-1].props
    assert len(paths["tokens"]) == 8 and len(paths["values"][0]) == model.cfg.n_layers
    print(f"attention view (1 layer x 1 head, 8 tokens): {len(heads.fragment('v'))} characters")


# ---------------------------------------------------------------------- content
def test_attention_heads_hold_the_model_patterns(load: Any, backend: str) -> None:
    model = load("tiny-gpt2", backend)
    adapter = osl.ModelAdapter(model)
    view = render.attention_heads(model, "1 2 3 4", layers=[0, 1], heads=[1, 3])
    tokens = adapter.to_tokens("1 2 3 4")
    with adapter.eager_attention(), torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    components = [p for p in view.parts if isinstance(p, render.Component)]
    assert [c.name for c in components] == ["AttentionHeads"] * 2 + ["ColoredTokensMulti"]
    for layer, component in zip([0, 1], components, strict=False):
        expected = cache[f"blocks.{layer}.attn.hook_pattern"][0, [1, 3]]
        shown = torch.tensor(component.props["attention"], dtype=torch.float64)
        # 4 significant digits: relative error below 5e-4 (plus exact zeros above the diagonal)
        torch.testing.assert_close(shown, expected.double(), rtol=5e-4, atol=1e-12)
        assert torch.allclose(
            shown.sum(-1), torch.ones(shown.shape[:-1], dtype=torch.float64), atol=5e-3
        )
        assert component.props["attentionHeadNames"] == [f"L{layer}H1", f"L{layer}H3"]
        assert component.props["tokens"] == adapter.to_str_tokens(tokens)
    paths = osl.attention_paths(model, "1 2 3 4", method="rollout")
    shown = torch.tensor(components[-1].props["values"], dtype=torch.float64)
    torch.testing.assert_close(shown, paths.weights[0].T, rtol=5e-4, atol=0.0)


def test_attention_heads_leave_the_model_as_it_was(
    load: Any, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load("tiny-llama", backend)
    clean, state = hook_registry(model), state_of(model)
    attention = osl.ModelAdapter(model).attention_implementation
    render.attention_heads(model, "1 1 1")
    assert leftover_hooks(model, clean) == [] and state_of(model) == state

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("paths failed")

    monkeypatch.setattr("oversquash_lens.render._attention.attention_paths", fail)
    with pytest.raises(RuntimeError, match="paths failed"):
        render.attention_heads(model, "1 1 1")
    assert leftover_hooks(model, clean) == [] and state_of(model) == state
    assert osl.ModelAdapter(model).attention_implementation == attention


def test_attention_heads_defaults_and_refusals(load: Any) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    view = render.attention_heads(model, "1 1", paths=False)
    names = [p.name for p in view.parts if isinstance(p, render.Component)]
    assert names == ["AttentionHeads"] * model.cfg.n_layers
    with pytest.raises(ValueError, match="out of range"):
        render.attention_heads(model, "1 1", layers=[5])
    with pytest.raises(ValueError, match="out of range"):
        render.attention_heads(model, "1 1", heads=[-1])
    with pytest.raises(ValueError, match="give a prompt"):
        render.attention_heads(model)
    with pytest.raises(ValueError, match="one prompt"):
        render.attention_heads(model, torch.ones(2, 3, dtype=torch.long))
    only_paths = render.attention_heads(path_result(), max_tokens=2)
    assert [p.name for p in only_paths.parts if isinstance(p, render.Component)] == [
        "ColoredTokensMulti"
    ]
    assert components(only_paths)[-1].props["tokens"] == [" 1", " 1"]


def test_flow_tokens_rows_are_layers() -> None:
    view = render.flow_tokens(sensitivity_result())
    props = components(view)[0].props
    assert props["labels"] == ["v(1) after block 0", "y_n (final norm)"]
    assert props["values"] == [[3, 2], [1.5, 1e-05], [0.75, 123500]]  # [token, row]
    with pytest.raises(ValueError, match="kind='sensitivity'"):
        render.flow_tokens(sensitivity_result(), kind="paths")
    with pytest.raises(ValueError, match="kind='paths'"):
        render.flow_tokens(path_result())
    with pytest.raises(ValueError, match="kind must be"):
        render.flow_tokens(path_result(), kind="bogus")


def test_collapse_pair_highlights_the_difference() -> None:
    view = render.collapse_pair(pair_comparison(), tokens=(["<bos>", "1"], ["<bos>", "1", "1"]))
    a, b = [p.props for p in view.parts if isinstance(p, render.Component)]
    assert a["values"] == [0.0, 0.0] and b["values"] == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="metric must be"):
        render.collapse_pair(pair_comparison(), metric="l3")


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one value per token"):
        render.colored_tokens(["a", "b"], [1.0])
    with pytest.raises(TypeError, match="must be numbers"):
        render.colored_tokens(["a"], ["x"])
    with pytest.raises(ValueError, match="1-D"):
        render.colored_tokens(["a"], [[1.0]])
    with pytest.raises(ValueError, match="row names"):
        render.colored_tokens_multi(["a"], [[1.0, 2.0]], ["only one"])
    with pytest.raises(ValueError, match="must start with a letter"):
        render.colored_tokens(["a"], [1.0]).fragment("1bad")


# ---------------------------------------------------------------------- ids, repr, save
def test_ids_are_pinnable_and_unique() -> None:
    view = render.colored_tokens_multi(["a"], [[1.0]], ["r"])
    assert view.fragment("x") == view.fragment("x")
    assert 'id="x-0"' in view.fragment("x")
    first, second = view.fragment(), view.fragment()
    assert re.findall(r'id="(osl-\d+)"', first) != re.findall(r'id="(osl-\d+)"', second)
    shared = render.element_ids("p")
    both = view.fragment(shared) + view.fragment(shared)
    assert re.findall(r'id="(p-\d+)"', both) == ["p-0", "p-1"]
    page = render.page(fixed_views(), title="t").html()
    ids = re.findall(r'<div id="([^"]+)"', page)
    assert len(ids) == len(set(ids)) == 6


def test_repr_html_is_self_contained_and_repr_is_short() -> None:
    view = render.colored_tokens(["a"], [1.0])
    snippet = view._repr_html_()
    assert snippet.count(render.bundle()) == 1
    assert snippet.index(render.bundle()) < snippet.index("CircuitsVis.render(")
    assert len(repr(view)) < 200 and "ColoredTokens" in repr(view)


def test_save_html_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    view = render.colored_tokens(["<bos>"], [1.0])
    path = view.save_html(tmp_path / "sub" / "view")
    assert path == tmp_path / "sub" / "view.html"
    assert path.read_text(encoding="utf-8") == view.html()
    before = path.read_bytes()

    def broken(self: Any) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(render.Rendered, "html", broken)
    with pytest.raises(RuntimeError):
        view.save_html(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["view.html"]


# ---------------------------------------------------------------------- figures
def test_save_figure_writes_every_format_reproducibly(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    with render.style():
        fig, ax = plt.subplots()
        ax.plot([1, 10, 100], [1, 0.1, 0.01])
        render.log_axes(ax, x=True)
        render.precision_lines(ax)
    paths = render.save_figure(fig, tmp_path / "fig.png", formats=("png", "svg"))
    assert [p.name for p in paths] == ["fig.png", "fig.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG")
    svg = paths[1].read_bytes()
    assert render.save_figure(fig, tmp_path / "again", formats=("svg",))[0].read_bytes() == svg
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.svg", "fig.png", "fig.svg"]
    with pytest.raises(ValueError, match="at least one format"):
        render.save_figure(fig, tmp_path / "none", formats=())


def test_precision_lines_sit_at_the_epsilons() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    lines = render.precision_lines(ax, ["bfloat16", "float16", "float32"])
    assert [line.get_ydata()[0] for line in lines] == [2.0**-7, 2.0**-10, 2.0**-23]
    assert [line.get_label() for line in lines][2] == "2^-23 (fp32 ε)"
    plt.close(fig)


def test_result_plots_share_the_style(load: Any) -> None:
    import matplotlib.pyplot as plt

    from oversquash_lens.plotting import COLORS

    def first_colour(ax: Any) -> str:
        import matplotlib.colors

        return matplotlib.colors.to_hex(ax.get_lines()[0].get_color())

    def grid_on(ax: Any) -> bool:
        return any(line.get_visible() for line in ax.xaxis.get_gridlines())

    model = load("tiny-gpt2", BACKENDS[0])
    collapse = osl.collapse(model, osl.tasks.ones(), [2, 4], ["float32"], progress=False)
    ax = collapse.plot(layer=None).axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"  # Fig 5: log-log
    eps_lines = [line for line in ax.get_lines() if "ε" in line.get_label()]
    assert [line.get_ydata()[0] for line in eps_lines] == [2.0**-7, 2.0**-10]
    assert first_colour(ax) == COLORS[0].lower() and grid_on(ax)
    for ax in (path_result().plot().axes[0], sensitivity_result().plot().axes[0]):
        assert ax.get_yscale() == "log" and grid_on(ax)
        assert first_colour(ax) == COLORS[0].lower()
    flow = osl.FlowResult.combine(path_result(), sensitivity_result())
    figure = flow.plot()
    profile, scatter, agreement, *heatmaps = [
        ax for ax in figure.axes if ax.get_label() != "<colorbar>"
    ]
    assert grid_on(profile) and grid_on(scatter) and grid_on(agreement)
    assert not any(grid_on(ax) for ax in heatmaps)
    assert scatter.get_xscale() == scatter.get_yscale() == "log"
    plt.close("all")


def test_views_stay_self_contained_where_ipykernel_is_only_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # nbclient imports ipykernel in the process that runs notebooks; that process is not
    # a kernel, so its views must still carry the bundle every time.
    import types

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    render.notebook_bundle()
    view = render.colored_tokens(["a"], [1.0])
    assert [view._repr_html_().count(render.bundle()) for _ in range(2)] == [1, 1]
