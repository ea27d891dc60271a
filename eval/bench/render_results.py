"""Write the bench tables of ``docs/performance.md`` from ``eval/bench/results/*.jsonl``.

    python eval/bench/render_results.py            # rewrite the page between its markers
    python eval/bench/render_results.py --check    # exit 1 if the page is not what the files give

The page keeps its own prose; everything between ``<!-- results:start -->`` and
``<!-- results:end -->`` is generated: a summary table (what each bench measures, its goal, where
its rows are), then per bench the latest row of each (row, command) pair, in file order, with its
ratio, figures, machine, date and command.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import REPO, RESULTS_DIR, read_rows  # noqa: E402

PAGE = REPO / "docs" / "performance.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# bench -> (what it measures, goal); the page's order. A results file not named here follows, in name order.
BENCHES = {
    "bench_data": ("DataModule CPU per clip against a bare decode loop of the same clips (one loop alone / as many "
                   "loops at once as there are workers)", "≥ 0.8×"),
    "bench_shards": ("Packed shards: clips per CPU-second of one loader process from shards against a bare JPEG decode "
                     "of the same stored frames, against decoding the clips from video, frame folders; pack throughput; "
                     "one epoch of a SurgLaVi-β-size corpus through the DataModule with its memory",
                     "shards raw ≥ 0.9× bare JPEG; ≥ 20× video; memory flat"),
    "bench_open": ("A training read from a reader opened for it: decord's against ours over the MP4's own index",
                   "none of its own (the data goal's reads)"),
    "embedded_default": ("The embedded default, `surgclip train -c configs/base.yaml -c configs/sample.yaml` (recorded with "
                         "`python eval/bench/results.py record-run RUN_DIR`)",
                         "≤ 5 min from the command; ≤ 1.5× the bare compute"),
    "bench_train": ("Training step: Lightning + InfoNCE against a bare PyTorch loop; bf16 autocast against fp32",
                    "Lightning / bare ≥ 0.9×"),
    "bench_zeroshot": ("Zero-shot evaluator against the bare forward", "≤ 1.15×"),
    "bench_overlap": ("How far overlapping the evaluator's reader with the forward can go on this machine",
                      "≤ 1.15× (the evaluator's)"),
    "bench_peer": ("SurgCLIP-B against the published package; bf16 inference on CPU",
                   "fp32 ≥ 1.2×; bf16 ≥ 2.5×; `VideoPreprocessor` ≥ 10×; bf16 logits within 1e-2"),
    "bench_gpu": ("Inference and training steps by precision (fp32, bf16, fp16) on a CUDA GPU "
                  "(`bash eval/bench/gpu_checks.sh`)",
                  "bf16 logits within 1e-2; zero-shot within 0.5 point"),
    "bench_index": ("Index search above the size threshold", "recall@10 ≥ 0.95 at ≥ 10× exact"),
    "bench_memory": ("Zero-shot evaluator's peak RSS over long videos", "flat"),
    "bench_memory_index": ("The indexer's (`surgclip index`) peak RSS over long videos", "flat"),
    "bench_serve": ("Query latency of `surgclip serve` over HTTP against the same search in-process",
                    "none of its own"),
    "bench_stream": ("The streaming reader against decord's random access, the same frames", "none of its own"),
    "bench_suite": ("The suite (`surgclip eval --suite surglavi`) on the sample against a bare forward",
                    "none of its own"),
}


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def number(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e6:
            return f"{v:.1f}"
        return f"{v:.1f}" if 100 <= abs(v) < 1e6 else f"{v:.4g}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{number(v[0])}–{number(v[1])}"
    if v is None:
        return "–"
    return str(v)


def ratio(v) -> str:
    return "–" if v is None else number(v) + "×"


def machine(m) -> str:
    if isinstance(m, dict):
        out = f"{m.get('cpu')}, {m.get('cores')} cores"
        if m.get("torch_threads") is not None:
            out += f", {m['torch_threads']} torch threads"
        return out + (f", {m['gpu']}" if m.get("gpu") else "")
    return "–" if m is None else str(m)


def latest(rows: list[dict]) -> list[dict]:
    """The last row of each (row, command) pair, in the order of those last rows."""
    last = {}
    for i, r in enumerate(rows):
        last[(r["row"], r["command"])] = (i, r)
    return [r for _, r in sorted(last.values(), key=lambda x: x[0])]


def bench_table(name: str, rows: list[dict]) -> list[str]:
    what, goal = BENCHES.get(name, ("", "none of its own"))
    rows = latest(rows)
    kinds = list(dict.fromkeys(r["ratio_of"] for r in rows if r.get("ratio") is not None and r.get("ratio_of")))
    intro = f"{what}. Goal: {goal}." + (f" Ratio: {kinds[0]}." if len(kinds) == 1 else "")
    lines = [f"### {name}", "", f"{intro} Rows: `eval/bench/results/{name}.jsonl`.", ""]
    if not rows:
        return lines + ["No run recorded yet.", ""]
    lines += ["| row | ratio | figures | machine | date | command |", "|---|---|---|---|---|---|"]
    for r in rows:
        figures = "; ".join(f"{k} {number(v)}" for k, v in (r.get("figures") or {}).items())
        note = f" ({r['note']})" if r.get("note") else ""
        date = (r.get("date") or "–")[:10]
        of = f" ({r['ratio_of']})" if len(kinds) > 1 and r.get("ratio") is not None and r.get("ratio_of") else ""
        lines.append("| " + " | ".join(cell(c) for c in (
            r["row"] + note, ratio(r.get("ratio")) + of, figures, machine(r.get("machine")), date))
            + f" | `{cell(r['command'])}` |")
    return lines + [""]


def render(results_dir: Path = RESULTS_DIR) -> str:
    """The generated block, markers included."""
    files = {p.stem: read_rows(p) for p in sorted(Path(results_dir).glob("*.jsonl"))}
    names = list(BENCHES) + [n for n in sorted(files) if n not in BENCHES]
    lines = [START, "<!-- generated by eval/bench/render_results.py from eval/bench/results/*.jsonl: edit those -->", "",
             "| bench | what it measures | goal | rows |", "|---|---|---|---|"]
    for n in names:
        what, goal = BENCHES.get(n, ("", "none of its own"))
        lines.append(f"| {n} | {cell(what)} | {cell(goal)} | {len(latest(files.get(n, [])))} |")
    lines.append("")
    for n in names:
        lines += bench_table(n, files.get(n, []))
    return "\n".join(lines).rstrip("\n") + "\n" + END


def update(page: str, block: str) -> str:
    """``page`` with the text between (and including) the markers replaced by ``block``."""
    start, end = page.find(START), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the page lacks the markers {START} ... {END}")
    return page[:start] + block + page[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check: exit 1 if the page differs from the files")
    ap.add_argument("--page", type=Path, default=PAGE)
    ap.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    page = args.page.read_text(encoding="utf-8")
    new = update(page, render(args.results))
    if args.check:
        if new != page:
            print(f"{args.page} is out of date: run python eval/bench/render_results.py", file=sys.stderr)
            return 1
        return 0
    if new != page:
        args.page.write_text(new, encoding="utf-8")
        print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
