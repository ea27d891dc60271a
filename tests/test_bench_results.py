"""The benches' results files and the page that quotes them: every row parses and says how it was
measured, ``docs/performance.md`` is exactly what ``eval/bench/render_results.py`` renders from the
files, and the shared row writer round-trips a row."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "eval" / "bench"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # render_results imports results as the benches do
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results = _load("results")
render_results = _load("render_results")
FILES = sorted((BENCH / "results").glob("*.jsonl"))


def test_there_are_results_files():
    assert FILES, "eval/bench/results/*.jsonl: none"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_row_parses_and_says_how_it_was_measured(path):
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines, f"{path.name} is empty"
    for n, line in enumerate(lines, 1):
        row = json.loads(line)  # strict JSON: NaN would not be written (allow_nan=False)
        for key in ("command", "machine", "date"):
            assert key in row, f"{path.name}:{n} lacks {key!r}"
        assert row["bench"] == path.stem, f"{path.name}:{n} is a row of {row['bench']}"
        assert isinstance(row["row"], str) and row["row"], f"{path.name}:{n}: no row label"
        assert isinstance(row["figures"], dict) and row["figures"], f"{path.name}:{n}: no figures"
        assert isinstance(row["command"], str) and row["command"], f"{path.name}:{n}: no command"
        assert row["machine"], f"{path.name}:{n}: no machine"
        assert row["date"] is None or isinstance(row["date"], str), f"{path.name}:{n}: date {row['date']!r}"


def test_the_page_is_what_the_results_files_render():
    page = render_results.PAGE.read_text(encoding="utf-8")
    rendered = render_results.update(page, render_results.render())
    assert page == rendered, "docs/performance.md is out of date: run python eval/bench/render_results.py"


def test_the_row_writer_round_trips_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval/bench/bench_x.py", "--size", "64", "--out", "a b.jsonl"])
    out = tmp_path / "sub" / "bench_x.jsonl"
    rec = results.Recorder("bench_x.py", out)
    written = rec.add("tiny T=1", {"ms": 1.25, "range": (0.5, 0.75), "nan": float("nan"), "ok": True},
                      ratio=1.5, ratio_of="a / b", note="smoke")
    second = results.make_row("bench_x", "tiny T=16", {"ms": 3})
    results.append_row(out, second)
    rows = results.read_rows(out)
    assert rows == [written, second]
    assert rows[0]["figures"] == {"ms": 1.25, "range": [0.5, 0.75], "nan": None, "ok": True}
    assert rows[0]["command"] == "python eval/bench/bench_x.py --size 64 --out 'a b.jsonl'"
    assert rows[0]["bench"] == "bench_x" and rows[0]["ratio"] == 1.5 and rows[0]["note"] == "smoke"
    assert set(rows[0]["machine"]) == {"cpu", "cores", "torch_threads", "gpu"} and rows[0]["machine"]["cores"] >= 1
    assert rows[0]["date"].endswith("+00:00")
    assert len(out.read_text().splitlines()) == 2  # one line per row
    with pytest.raises(ValueError, match="command"):
        results.append_row(out, {k: v for k, v in second.items() if k != "command"})


def test_render_shows_each_rows_figure_machine_date_and_command(tmp_path):
    row = {"bench": "bench_x", "row": "a | b", "figures": {"ms": 2.0, "x": [1.0, 1.5]}, "ratio": 1.5,
           "ratio_of": "a / b", "command": "python eval/bench/bench_x.py", "machine": "AMD EPYC, 2 cores",
           "date": "2026-12-05", "git": None}
    results.append_row(tmp_path / "bench_x.jsonl", {**row, "figures": {"ms": 9.0}})
    results.append_row(tmp_path / "bench_x.jsonl", row)  # the same row again: only the latest is shown
    block = render_results.render(tmp_path)
    line, = [ln for ln in block.splitlines() if ln.startswith("| a \\| b")]
    assert line == ("| a \\| b | 1.5× | ms 2.0; x 1.0–1.5 | AMD EPYC, 2 cores | 2026-12-05 | "
                    "`python eval/bench/bench_x.py` |")
    assert "No run recorded yet." in block  # the benches named on the page without a file here
    page = f"intro\n{render_results.START}\nold\n{render_results.END}\nrest\n"
    assert render_results.update(page, block) == f"intro\n{block}\nrest\n"
