"""osl.report: the suite's sizes, the folder it writes, the page offline in a browser."""

import contextlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

import oversquash_lens as osl
from oversquash_lens import tasks
from oversquash_lens._behaviour_result import BehaviourResult
from oversquash_lens._cli import main
from oversquash_lens.reporting import get_suite, paper_suite, report
from oversquash_lens.reporting._plan import (
    FIG5_LENGTHS,
    REPORT_PRECISIONS,
    SWEEP_PRECISIONS,
    BehaviourStep,
    CollapseStep,
    TraceStep,
    fit_lengths,
    shares,
)
from oversquash_lens.reporting._tables import collapse_rows
from oversquash_lens.results import Result

from .browser import ARTIFACTS, open_page, require_chromium
from .conftest import BACKENDS

BUNDLE_BYTES = 1_000_000  # the circuitsvis bundle is ~1.3 MB: inlined once, not zero times
MAX_BYTES = 5_000_000  # the size limit for the SmolLM2 report


# ---------------------------------------------------------------- the suite
def test_behaviour_steps_one_per_paper_task() -> None:
    steps = [s for s in paper_suite().steps if isinstance(s, BehaviourStep)]
    assert [s.task for s in steps] == ["copy_last", "copy_first", "count_ones"]
    assert all(s.lengths[-1] == 200 and s.samples == 1 for s in steps)


def test_full_and_quick_sizes() -> None:
    full, quick = paper_suite(), paper_suite(quick=True)
    assert not full.quick and quick.quick
    for suite, top in ((full, 1000), (quick, 200)):
        collapse = [s for s in suite.steps if isinstance(s, CollapseStep)]
        assert [s.key for s in collapse] == [
            "fig5_a_count_ones",
            "fig5_b_random_digits",
            "fig5_c_copy_ones",
            "fig5_d_copy_commas_left",
            "fig5_d_copy_commas_right",
        ]
        by_key = {s.key: s for s in collapse}
        # nested families: every length from one pass; the others at the Fig 5 lengths
        assert by_key["fig5_a_count_ones"].lengths == tuple(range(1, top + 1))
        sparse = by_key["fig5_b_random_digits"].lengths
        assert sparse[-1] == top + 1 and set(sparse[:-1]) <= set(FIG5_LENGTHS)
        assert by_key["fig5_d_copy_commas_right"].lengths == sparse
        assert by_key["fig5_a_count_ones"].sweep
        assert set(by_key["fig5_a_count_ones"].precisions) == set(SWEEP_PRECISIONS)
        assert by_key["fig5_c_copy_ones"].precisions == REPORT_PRECISIONS
    assert full.steps[1].lengths == (1, 2, 6, 11, 51, 101, 501, 1001)  # type: ignore[union-attr]
    flows = [s for s in full.steps if isinstance(s, TraceStep)]
    assert [(s.prompt, s.n) for s in flows] == [("count_ones", 256), ("last_digit", 256)]
    assert flows[0].layers(30) == [0, 14, 29, "final"]
    assert [s.layers(30) for s in quick.steps if isinstance(s, TraceStep)] == [["final"]] * 2


def test_precisions_override_fig5_and_extend_the_sweep() -> None:
    suite = paper_suite(quick=True, precisions=["float32", "emulate:e5m3"])
    a, c = suite.steps[0], suite.steps[2]
    assert isinstance(a, CollapseStep) and isinstance(c, CollapseStep)
    assert c.precisions == c.plot_precisions == ("float32", "emulate:e5m3")
    assert a.precisions[:2] == ("float32", "emulate:e5m3")
    assert set(a.precisions) == {"emulate:e5m3", *SWEEP_PRECISIONS}


def test_unknown_suite_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="choose one of paper, smoke"):
        get_suite("fig99")
    with pytest.raises(ValueError, match="unknown size"):
        paper_suite(size="huge")


def test_fit_lengths_keeps_the_largest_that_fits(load: Any) -> None:
    model = load("tiny-gpt2", BACKENDS[0])
    family = tasks.repeated_last("1", prefix=tasks.COUNT_ONES)
    kept = fit_lengths(family, model, [1, 10, 5000])
    largest = kept[-1]
    assert kept[:2] == [1, 10] and 10 < largest < 1024
    family.pairs(model, [largest])  # fits
    with pytest.raises(osl.PromptTooLongError):
        family.pairs(model, [largest + 1])
    assert fit_lengths(family, model, [3, 1]) == [1, 3]


# ---------------------------------------------------------------- the folder
@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """``oversquash-lens report --quick`` on tiny-gpt2 (one run, ~25 s)."""
    out = tmp_path_factory.mktemp("report")
    argv = ["report", "--model", "tiny-gpt2", "--backend", BACKENDS[0], "--quick"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([*argv, "--out", str(out), "--json"])
    assert code == 0
    return out, json.loads(stdout.getvalue())


@pytest.mark.slow
def test_quick_report_writes_every_file(quick_report: tuple[Path, dict[str, Any]]) -> None:
    out, printed = quick_report
    assert Path(printed["report"]) == out / "report.html"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and summary["provenance"]["model_name"] == "tiny-gpt2"
    assert set(summary["steps"]) == {s.key for s in paper_suite(quick=True).steps}
    for key, step in summary["steps"].items():
        result = Result.load(out / "results" / f"{key}.npz")
        kinds = {"fig5": osl.CollapseResult, "flow": osl.FlowResult, "glas": osl.GlassesResult}
        kind = kinds.get(key[:4], BehaviourResult)
        assert isinstance(result, kind)
        assert isinstance(
            result, osl.CollapseResult | osl.FlowResult | BehaviourResult | osl.GlassesResult
        )
        assert result.provenance.model_name == "tiny-gpt2"
        for suffix in ("png", "svg"):
            figure = out / "figures" / f"{key}.{suffix}"
            assert figure.stat().st_size > 1000
            assert f"figures/{key}.{suffix}" in step["files"]
    sweep = out / "figures" / "fig5_a_count_ones_precision_sweep.svg"
    assert sweep.stat().st_size > 1000
    assert summary["steps"]["fig5_a_count_ones"]["lengths"] == [1, 200, 200]
    assert summary["steps"]["fig5_b_random_digits"]["lengths"] == [1, 201, 7]
    accuracy = summary["steps"]["behaviour_copy_last"]["accuracy"]
    assert [row["k"] for row in accuracy] == [1, 5, 20]
    assert summary["seconds"]["total"] >= sum(
        v for k, v in summary["seconds"].items() if k not in ("total", "load")
    )


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN; floats to 1e-12 relative: refitting the 1/k law on the
    loaded arrays may sum in another order (seen: the slope one ulp apart)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)
    return a == b


@pytest.mark.slow
def test_summary_numbers_come_from_the_saved_results(
    quick_report: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = quick_report
    summary = json.loads((out / "summary.json").read_text())
    result = osl.CollapseResult.load(out / "results" / "fig5_a_count_ones.npz")
    rows = summary["steps"]["fig5_a_count_ones"]["precisions"]
    expected = collapse_rows(result)
    assert [r["precision"] for r in rows] == list(result.precisions)
    for row, want in zip(rows, expected, strict=True):
        assert all(_same(row[k], want[k]) for k in want), (row, want)
    sweep = summary["steps"]["fig5_a_count_ones"]["precision_sweep"]
    assert {r["precision"] for r in sweep} == set(SWEEP_PRECISIONS)
    eps = {r["precision"]: r["epsilon"] for r in sweep}
    assert eps["bfloat16"] == 2.0**-7 and eps["emulate:float8_e4m3"] == 2.0**-3
    flow = osl.FlowResult.load(out / "results" / "flow_count_ones_64.npz")
    y = flow.point_index()
    step = summary["steps"]["flow_count_ones_64"]
    assert step["n"] == 64 == flow.sensitivity.shape[-1]
    assert step["sensitivity"] == {**shares(flow.sensitivity[0, y]), "what": "sensitivity"} | {
        "ρ": float(flow.spearman[0, y]),
        "τ": float(flow.kendall[0, y]),
    }


@pytest.mark.slow
def test_page_is_self_contained(quick_report: tuple[Path, dict[str, Any]]) -> None:
    out, _ = quick_report
    page = (out / "report.html").read_text(encoding="utf-8")
    assert BUNDLE_BYTES < len(page.encode()) < MAX_BYTES
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)\s*=\s*[\"']?https?:", page)
    assert not re.search(r"<script[^>]*\ssrc=", page)  # the bundle is inline
    assert page.count("var CircuitsVis") + page.count("CircuitsVis=") >= 1
    # views: a collapse pair per Fig 5 panel, two token rows per flow, attention heads
    assert page.count("CircuitsVis.render(") >= 5 + 2 * 2 + 1
    # 5 panels, the sweep, 2 flows, 3 behaviour tasks (the glasses are full-report only)
    assert page.count('src="data:image/png;base64,') == 11
    for step in paper_suite(quick=True).steps:
        assert f'id="{step.key}"' in page


@pytest.mark.slow
def test_page_renders_offline_in_a_browser(quick_report: tuple[Path, dict[str, Any]]) -> None:
    require_chromium()
    out, _ = quick_report
    run = open_page(out / "report.html", screenshot=ARTIFACTS / "report" / "quick.png")
    assert run.page_requests == [], f"the report asked the network for {run.page_requests}"
    ids = re.findall(r'<div id="(osl-\d+)" class="osl-cv"', run.dom)
    assert len(ids) >= 10
    assert not re.search(r'<div id="osl-\d+" class="osl-cv"[^>]*></div>', run.dom)
    assert "Head Selector" in run.dom and run.dom.count("<canvas") >= 3
    assert run.dom.count("<img") == 11


@pytest.mark.parametrize("backend", BACKENDS)
def test_report_takes_a_model_object_on_each_backend(
    load: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    model = load("tiny-llama", backend)
    page = report(model, "smoke", tmp_path / "r", progress=True, figure_formats=["png"])
    assert "report" in capsys.readouterr().err  # the progress bar
    summary = json.loads((page.parent / "summary.json").read_text())
    assert summary["provenance"]["backend"] == backend and summary["suite"] == "smoke"
    result = osl.CollapseResult.load(page.parent / "results" / "fig5_a_count_ones.npz")
    assert result.lengths == tuple(range(1, 9))
    assert "tiny-llama" in page.read_text(encoding="utf-8")
    figures = page.parent / "figures"
    assert (figures / "fig5_a_count_ones.png").exists()
    assert not list(figures.glob("*.svg"))  # only the formats asked for
    glasses = osl.GlassesResult.load(page.parent / "results" / "glasses_copy_last.npz")
    frame = glasses.to_dataframe()
    rows = summary["steps"]["glasses_copy_last"]["rows"]
    assert len(rows) == len(frame) == 4 * 2  # four variants at k = 2 and 4
    for row, (_, want) in zip(rows, frame.iterrows(), strict=True):
        assert all(
            _same(row[k], want[k].item() if hasattr(want[k], "item") else want[k]) for k in row
        ), (row, dict(want))


def test_glasses_only_in_the_full_report() -> None:
    assert [s.key for s in paper_suite().steps][-1] == "glasses_copy_last"
    assert not [s for s in paper_suite(quick=True).steps if s.key.startswith("glasses")]
