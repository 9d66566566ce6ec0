"""The report's steps split across machines, then merged into the unsharded report.

Shard ``I`` of ``N`` runs every ``N``-th step of the suite (steps ``I-1``, ``I-1+N``, …),
writes their results and figures into its own folder as the unsharded report would, and
``report.shard-I-of-N.json``: the suite, the model's provenance, and each section it ran
(page parts as data: HTML text and the circuitsvis views' components, the numbers of
``summary.json``, the files written). :func:`merge_report` checks that the files belong to
one model and one suite, that every shard is there once and finished, copies the shards'
files into one folder and writes ``report.html`` and ``summary.json`` with the sections in
the suite's order: the same page as the unsharded run, apart from the timings.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from oversquash_lens._shards import Shard
    >>> folder = Path(tempfile.mkdtemp())
    >>> files = [report_shard("tiny-nope", "smoke", folder / f"s{i}", Shard(i, 2),
    ...                       progress=False, figure_formats=["png"]) for i in (1, 2)]
    >>> merge_report(files, folder / "merged").name
    'report.html'
"""

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._errors import CheckpointError, CheckpointMismatchError
from .._json import dumps
from .._shards import Shard
from ..render._page import Component, Html, Rendered
from ..results import Provenance, atomic_write_bytes
from ._plan import get_suite
from ._report import ReportRun, Section, run_steps, start_run, write_page

KIND = "oversquash_lens report shard"
VERSION = 1


def shard_steps(steps: Sequence[Any], shard: Shard) -> list[Any]:
    """The steps shard ``I/N`` runs: every ``N``-th, from step ``I-1``.

    Example:
        >>> shard_steps(list("abcde"), Shard(2, 2))
        ['b', 'd']
    """
    return list(steps[shard.index - 1 :: shard.count])


def report_shard(
    model: Any,
    suite: str,
    out: str | Path,
    shard: Shard,
    *,
    quick: bool = False,
    progress: bool = True,
    precisions: list[str] | None = None,
    load_options: dict[str, Any] | None = None,
    figure_formats: Sequence[str] = ("png", "svg"),
) -> Path:
    """Run shard ``shard`` of :func:`~oversquash_lens.report`'s steps into ``out``.

    The arguments are the report's; every shard must get the same (``out`` may differ).

    Returns:
        The shard's file, ``out/report.shard-I-of-N.json``, for :func:`merge_report`.
    """
    plan = get_suite(suite, quick=quick, precisions=precisions)  # fails before loading
    run = start_run(model, plan, out, load_options, figure_formats)
    assert run.adapter is not None  # a run that starts has its model
    path = run.folder / f"report.shard-{shard.index}-of-{shard.count}.json"
    mine = shard_steps(plan.steps, shard)
    meta = {
        "kind": KIND,
        "version": VERSION,
        "suite": plan.name,
        "quick": plan.quick,
        "precisions": precisions,
        "formats": list(run.formats),
        "shard": [shard.index, shard.count],
        "steps": [step.key for step in mine],
        "fingerprint": run.adapter.fingerprint(),
        "provenance": run.provenance.to_dict(),
        "load_seconds": run.load_seconds,
    }

    def save(sections: list[Section], finished: bool = False) -> None:
        body = meta | {"finished": finished, "seconds": run.elapsed()}
        body["sections"] = [_section_data(s) for s in sections]
        # strict JSON as summary.json writes it (NaN and inf are null, numpy values plain)
        atomic_write_bytes(path, dumps(body, indent=1, default=str).encode())

    save([])
    save(run_steps(run, mine, progress, after_step=save), finished=True)
    return path


def merge_report(paths: Iterable[str | Path], out: str | Path) -> Path:
    """Combine every shard's file into one report folder; return ``report.html``.

    Raises:
        CheckpointError: A file that is not a report shard, a shard that did not finish,
            or shards missing or given twice.
        CheckpointMismatchError: Shards of another model, suite, size or precisions.
    """
    pieces = [(Path(p), _read(Path(p))) for p in paths]
    if not pieces:
        raise CheckpointError("merge_report needs the shards' files: none were given")
    first = pieces[0][1]
    for path, piece in pieces[1:]:
        for key in ("suite", "quick", "precisions", "formats", "fingerprint"):
            if piece[key] != first[key]:
                raise CheckpointMismatchError(
                    f"{path} was written for another {key} than {pieces[0][0]} "
                    f"({piece[key]!r} vs {first[key]!r}): merge the shards of one report"
                )
    count = first["shard"][1]
    indices = sorted(piece["shard"][0] for _, piece in pieces)
    if any(piece["shard"][1] != count for _, piece in pieces) or indices != list(
        range(1, count + 1)
    ):
        raise CheckpointError(
            f"merge_report needs each of the {count} shards once; got shards {indices} "
            f"of {[piece['shard'][1] for _, piece in pieces]}"
        )
    for path, piece in pieces:
        if not piece["finished"]:
            raise CheckpointError(
                f"{path}: shard {piece['shard'][0]}/{count} did not finish "
                f"({len(piece['sections'])} of {len(piece['steps'])} steps); rerun it"
            )
    plan = get_suite(first["suite"], quick=first["quick"], precisions=first["precisions"])
    folder = Path(out)
    by_key: dict[str, Section] = {}
    for path, piece in pieces:
        for data in piece["sections"]:
            section = _section(data, tuple(first["formats"]))
            for name in section.files:
                _copy(path.parent / name, folder / name)
            by_key[section.key] = section
    sections = [by_key[step.key] for step in plan.steps]
    run = ReportRun(
        model=None,
        adapter=None,
        provenance=Provenance.from_dict(first["provenance"]),
        plan=plan,
        folder=folder,
        formats=tuple(first["formats"]),
        load_seconds=max(piece["load_seconds"] for _, piece in pieces),
        start=0.0,
        seconds=max(piece["seconds"] for _, piece in pieces),  # the shards ran side by side
    )
    for sub in ("results", "figures"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return write_page(run, sections)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a report shard's file: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise CheckpointError(
            f"{path} is not a report shard's file (written by `oversquash-lens report "
            "--shard I/N --out DIR`)"
        )
    if data.get("version") != VERSION:
        raise CheckpointError(
            f"{path} was written by another version of oversquash_lens (shard format "
            f"{data.get('version')!r}, this one reads {VERSION}); rerun the shard"
        )
    return data


def _section_data(section: Section) -> dict[str, Any]:
    return {
        "key": section.key,
        "title": section.title,
        "parts": [_part_data(part) for part in section.parts],
        "summary": section.summary,
        "files": section.files,
        "seconds": section.seconds,
    }


def _part_data(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"html": part}
    if isinstance(part, Rendered):
        pieces = [
            {"text": p.text}
            if isinstance(p, Html)
            else {"component": p.name, "props": p.props, "height": p.height}
            for p in part.parts
        ]
        return {"view": {"title": part.title, "caption": part.caption, "parts": pieces}}
    raise TypeError(f"a report part is HTML text or a view, got {type(part).__name__}")


def _part(data: dict[str, Any]) -> Any:
    if "html" in data:
        return data["html"]
    view = data["view"]
    parts = [
        Html(p["text"]) if "text" in p else Component(p["component"], p["props"], p["height"])
        for p in view["parts"]
    ]
    return Rendered(view["title"], parts, view["caption"])


def _section(data: dict[str, Any], formats: tuple[str, ...]) -> Section:
    return Section(
        key=data["key"],
        title=data["title"],
        parts=[_part(p) for p in data["parts"]],
        summary=data["summary"],
        files=list(data["files"]),
        seconds=float(data["seconds"]),
        formats=formats,
    )


def _copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise CheckpointError(f"{source} is missing: a shard's file names it; rerun that shard")
    if source.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
