"""``surgclip eval --suite`` fills the SurgLaVi table on the sample; YAML suites skip absent data and
refuse malformed entries; the remaining CLI rows (step, verb, custom, linear probe) run end to end."""
import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import surgclip
from surgclip.cli import main
from surgclip import datasets as D
from surgclip.datasets.protocols import task_classes, task_prompts
from surgclip.evaluation.suite import SURGLAVI_SUITE, SuiteError, load_suite
from surgclip.evaluation.zeroshot import evaluate_zero_shot

import surglavi_reference as official

FAST = ["--model", "tiny", "--num-frames", "2", "--limit", "3"]


@pytest.fixture(scope="module")
def suite_out(small_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    assert main(["eval", "--suite", "surglavi", "--data-root", str(small_sample / "benchmarks"), "--out", str(out)]
                + FAST) == 0
    return out


def test_surglavi_suite_fills_every_column_on_the_sample(suite_out):
    report = json.loads((suite_out / "table.json").read_text())
    assert report["columns"] == [e["column"] for e in SURGLAVI_SUITE]
    assert not report["skipped"] and not report["failed"]
    assert report["convention"] == "surglavi" and report["aggregate"] == "video"
    assert [c["column"] for c in report["cells"]] == report["columns"]
    for cell in report["cells"]:
        assert cell["checkpoint"].startswith("params-sha256:") and cell["convention"] == "surglavi" and cell["split"]
        assert cell["prompt_set"] in ("camma", "descriptive") and cell["frames_scored"] > 0
        assert all(Path(f).is_file() for f in cell["predictions"])
    folds = {c["column"]: c["fold"] for c in report["cells"]}
    assert folds["StrasBypass70"] == 0 and folds["BernBypass70"] == 0
    md = (suite_out / "table.md").read_text()
    header, _, row = md.split("\n")[2:5]
    assert header.count("|") == len(SURGLAVI_SUITE) + 2 and "CholecT50 triplet ivt mAP" in header
    assert " - " not in row.split("|", 2)[2]
    assert "convention `surglavi`" in md and "mean over videos" in md
    with open(suite_out / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(SURGLAVI_SUITE) and {r["shown"] for r in rows} == {"video"}


def _cell(report, column):
    return next(c for c in report["cells"] if c["column"] == column)


def test_every_cell_equals_the_official_evaluation_of_its_predictions(suite_out):
    """Each number of the table, recomputed from the predictions CSVs the run wrote with sklearn and
    ivtmetrics called exactly as the SurgLaVi evaluation code calls them, to 1e-9."""
    report = json.loads((suite_out / "table.json").read_text())
    for entry in SURGLAVI_SUITE:
        cell = _cell(report, entry["column"])
        m = cell["metrics"]
        files = {Path(f).name: f for f in cell["predictions"]}
        if entry["task"] == "triplet":
            ref = official.triplets({t: official.read_rows(files[f"predictions_{t}_cholect50.csv"])
                                     for t in ("triplet", "instrument", "verb", "target")})
            for key, task in (("ivt", "triplet"), ("i", "instrument"), ("v", "verb"), ("t", "target"),
                              ("it", "instrument-target"), ("iv", "instrument-verb")):
                assert m[key]["mAP"] == pytest.approx(ref[task]["mAP"], abs=1e-9), key
            assert float(cell["text"]) == pytest.approx(round(100 * ref["triplet"]["mAP"], 1))
            continue
        (path,) = files.values()
        rows = official.read_rows(path)
        if isinstance(rows[0]["ground_truth"], list):
            ref = official.tools(rows)
            assert m["mAP"] == pytest.approx(ref["video_avg_mAP"], abs=1e-9)
            assert m["global_mAP"] == pytest.approx(ref["overall_mAP"], abs=1e-9)
        else:
            num_classes = len(task_classes(D.load_protocol(entry["benchmark"]), entry["task"])) \
                if entry["benchmark"] != "surglavi" else len(rows[0]["prediction"])
            ref = official.workflow(rows, num_classes)
            assert m["accuracy"] == pytest.approx(ref["video_avg_accuracy"], abs=1e-9)
            assert m["f1"] == pytest.approx(ref["video_avg_f1"], abs=1e-9)
            assert m["global_accuracy"] == pytest.approx(ref["overall_accuracy"], abs=1e-9)
            assert m["global_f1"] == pytest.approx(ref["overall_f1_average"], abs=1e-9)


def test_from_predictions_gives_the_same_table(suite_out, tmp_path):
    out = tmp_path / "rescored"
    assert main(["eval", "--from-predictions", str(suite_out / "cells"), "--out", str(out)]) == 0
    ran, again = (json.loads((d / "table.json").read_text()) for d in (suite_out, out))
    assert again["columns"] == ran["columns"][:-1] + ["surglavi_phase"]  # no official name: the file name
    for a, b in zip(ran["cells"], again["cells"]):
        assert a["text"] == b["text"] and a["metrics"].keys() == b["metrics"].keys()
        for k, v in a["metrics"].items():
            assert b["metrics"][k] == pytest.approx(v, abs=1e-12, nan_ok=True), (a["column"], k)
    # the other convention and the other aggregate from the same files
    assert main(["eval", "--from-predictions", str(suite_out / "cells"), "--metrics", "camma", "--aggregate", "global",
                 "--out", str(tmp_path / "camma")]) == 0
    camma = json.loads((tmp_path / "camma" / "table.json").read_text())
    assert camma["convention"] == "camma" and camma["aggregate"] == "global"
    phase = _cell(camma, "Cholec80 phase")
    assert phase["value"] == {"accuracy": phase["metrics"]["global_accuracy"], "f1": phase["metrics"]["global_f1"]}
    assert phase["metrics"]["global_f1"] >= _cell(ran, "Cholec80 phase")["metrics"]["global_f1"]


def test_official_prediction_files_are_rescored(tmp_path):
    """A folder as the SurgLaVi code writes it (four columns, integer video ids, official dataset names)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "official"
    folder.mkdir()
    lines = ["video_idx,frame_idx,prediction,ground_truth"]
    for v in (49, 50):
        for f in range(20):
            lines.append(f'{v},{f},"{[float(x) for x in rng.standard_normal(7)]}",{int(rng.integers(0, 3))}')
    (folder / "predictions_cholec80.csv").write_text("\n".join(lines) + "\n")
    lines = ["video_idx,frame_idx,prediction,ground_truth"]
    for v in (1, 2, 3):
        for f in range(15):
            lines.append(f'{v},{f},"{[float(x) for x in rng.random(7)]}","{[int(x) for x in rng.random(7) < 0.3]}"')
    (folder / "predictions_grasp_tools.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["eval", "--from-predictions", str(folder), "--out", str(out)]) == 0
    report = json.loads((out / "table.json").read_text())
    assert report["columns"] == ["Cholec80 phase", "GraSP tool"]
    ref = official.workflow(official.read_rows(folder / "predictions_cholec80.csv"), 7)
    assert _cell(report, "Cholec80 phase")["metrics"]["f1"] == pytest.approx(ref["video_avg_f1"], abs=1e-12)
    ref = official.tools(official.read_rows(folder / "predictions_grasp_tools.csv"))
    assert _cell(report, "GraSP tool")["metrics"]["mAP"] == pytest.approx(ref["video_avg_mAP"], abs=1e-12)


@pytest.mark.parametrize("body, message", [
    ("video_idx,frame_idx,prediction\n1,0,\"[0.1, 0.2]\"\n", r"predictions_cholec80.csv: missing column\(s\) \['ground_truth'\]"),
    ("video_idx,frame_idx,prediction,ground_truth\n1,0,\"[0.1, 0.2]\",1\n",
     r"predictions_cholec80.csv:2: score vector has 2 values, expected 7"),
    ("video_idx,frame_idx,prediction,ground_truth\n1,0,\"[0.1, oops]\",1\n", r"predictions_cholec80.csv:2: column 'prediction'"),
    ("video_idx,frame_idx,prediction,ground_truth\n1,0,\"[0,0,0,0,0,0,1]\",9\n", r":2: ground_truth class 9 outside 0..6"),
])
def test_bad_predictions_name_the_file_and_row(tmp_path, capsys, body, message):
    (tmp_path / "predictions_cholec80.csv").write_text(body)
    assert main(["eval", "--from-predictions", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert re.search(message, capsys.readouterr().err)


def test_from_predictions_on_a_folder_without_any(tmp_path, capsys):
    assert main(["eval", "--from-predictions", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert f"no predictions_*.csv files under {tmp_path}" in capsys.readouterr().err


def test_written_scores_are_the_models(suite_out, small_sample):
    """The predictions of a cell are the model's cosine scores on those frames (a direct run agrees)."""
    report = json.loads((suite_out / "table.json").read_text())
    cell = _cell(report, "Cholec80 phase")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = D.load_benchmark("cholec80", small_sample / "benchmarks" / "cholec80", split="test").limit_per_video(3)
    model, _, tokenizer = surgclip.load("tiny", device="cpu")
    prompts, _ = task_prompts(D.load_protocol("cholec80"), "phase", cell["prompt_set"], table)
    result = evaluate_zero_shot(model, tokenizer, table, prompts, num_frames=2)
    rows = official.read_rows(cell["predictions"][0])
    np.testing.assert_allclose(np.array([r["prediction"] for r in rows]), result.scores, rtol=1e-6, atol=1e-6)
    assert [r["ground_truth"] for r in rows] == table.labels.tolist()
    assert result.metrics["f1"] == pytest.approx(cell["metrics"]["f1"], abs=1e-12)


def test_yaml_suite_skips_absent_data_and_refuses_malformed_entries(small_sample, tmp_path, capsys):
    bench = small_sample / "benchmarks"
    suite = tmp_path / "mine.yaml"
    suite.write_text(f"name: mine\nentries:\n"
                     f"  - {{benchmark: bernbypass70, task: step, root: {bench / 'multibypass140'}, prompts: names}}\n"
                     f"  - {{benchmark: grasp, task: phase, root: {tmp_path / 'nowhere'}}}\n"
                     f"  - {{benchmark: cholect50, task: verb, split: test}}\n")
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(suite), "--data-root", str(tmp_path / "empty"), "--out", str(out)] + FAST) == 0
    err = capsys.readouterr().err
    assert f"skipped grasp phase (grasp/phase, split test): missing {tmp_path / 'nowhere'}" in err
    assert f"missing {tmp_path / 'empty' / 'cholect50'}" in err
    report = json.loads((out / "table.json").read_text())
    assert [c["prompt_set"] for c in report["cells"]] == ["names"] and len(report["skipped"]) == 2
    suite.write_text("entries:\n  - {benchmark: grasp, task: phase}\n  - {benchmark: grasp, tsk: step}\n")
    with pytest.raises(SuiteError, match=r"entry 2: unknown keys \['tsk'\]"):
        load_suite(str(suite), str(bench))
    suite.write_text("entries:\n  - {benchmark: grasp, task: triplet}\n")
    with pytest.raises(SuiteError, match="entry 1 \\(grasp\\): benchmark grasp has no task 'triplet'"):
        load_suite(str(suite), str(bench))
    suite.write_text(f"entries:\n  - {{benchmark: grasp, root: {tmp_path / 'nowhere'}}}\n")
    assert main(["eval", "--suite", str(suite), "--out", str(out)] + FAST) == 1  # nothing ran
    # a prompt set that does not exist fails its cell; the other cells and the table are still written
    suite.write_text(f"entries:\n  - {{benchmark: bernbypass70, task: step, root: {bench / 'multibypass140'}, "
                     f"prompts: no_such_set}}\n  - {{benchmark: autolaparo, task: phase, root: {bench / 'autolaparo'}}}\n")
    assert main(["eval", "--suite", str(suite), "--out", str(tmp_path / "out2")] + FAST) == 1  # a cell failed
    report = json.loads((tmp_path / "out2" / "table.json").read_text())
    assert [c["benchmark_name"] for c in report["cells"]] == ["autolaparo"]
    assert "unknown prompt set 'no_such_set'" in report["failed"][0]["error"]


@pytest.mark.parametrize("args", [
    ["--benchmark", "multibypass140", "--site", "bern", "--task", "step", "--root", "multibypass140"],
    ["--benchmark", "cholect50", "--task", "verb", "--root", "cholect50"],
    ["--benchmark", "cholect50", "--task", "instrument", "--root", "cholect50", "--prompts", "names"],
    ["--benchmark", "cholect50", "--task", "target", "--root", "cholect50"],
    ["--benchmark", "strasbypass70", "--task", "step", "--root", "multibypass140", "--split", "all"],
])
def test_zeroshot_cli_rows(small_sample, tmp_path, args):
    i = args.index("--root") + 1
    args = args[:i] + [str(small_sample / "benchmarks" / args[i])] + args[i + 1:]
    assert main(["zeroshot", *args, "--out", str(tmp_path)] + FAST) == 0
    report = json.loads((tmp_path / "zeroshot.json").read_text())
    assert report["metrics"]["num_scored"] == 3 * len(set(report["metrics"].get("per_video", {})) or {0, 1})
    assert report["protocol"]["task"] == args[args.index("--task") + 1]


def test_custom_benchmark_zeroshot_and_linear_probe(small_sample, tmp_path):
    bench = small_sample / "benchmarks" / "autolaparo"
    (tmp_path / "classes.txt").write_text("\n".join(task_classes(D.load_protocol("autolaparo"), "phase")) + "\n")
    labels = tmp_path / "labels"
    labels.mkdir()
    for path in sorted((bench / "labels").glob("label_*.txt")):
        rows = [l.split("\t") for l in path.read_text().splitlines()[1:]]
        (labels / f"{path.stem[6:]}.csv").write_text("".join(f"{s},{int(p) - 1}\n" for s, p in rows))
    common = ["--benchmark", "custom", "--classes", str(tmp_path / "classes.txt"), "--labels", str(labels),
              "--videos", str(bench / "videos")]
    assert main(["zeroshot", *common, "--out", str(tmp_path / "zs")] + FAST) == 0
    custom = json.loads((tmp_path / "zs" / "zeroshot.json").read_text())["metrics"]
    assert custom["num_scored"] == 12 and custom["num_videos"] == 4
    assert main(["linear-probe", "--benchmark", "autolaparo", "--root", str(bench), "--percents", "100", "--shots", "2",
                 "--seeds", "0", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "lp")] + FAST) == 0
    probe = json.loads((tmp_path / "lp" / "linear_probe.json").read_text())
    assert probe["protocol"]["task"] == "phase" and probe["protocol"]["test_split"] == "test"
    assert list(probe["metrics"]) == ["100.0", "2-shot"]
    shot_run, full_run = probe["metrics"]["2-shot"]["runs"][0], probe["metrics"]["100.0"]["runs"][0]
    assert probe["metrics"]["2-shot"]["shots"] == 2
    assert 2 <= shot_run["num_train_frames"] <= min(14, full_run["num_train_frames"])  # <= 2 per phase present
    assert main(["linear-probe", *common, "--out", str(tmp_path / "lp2")] + FAST) == 1  # custom needs split files
    (tmp_path / "train.txt").write_text("01\n02\n")
    (tmp_path / "test.txt").write_text("15\n16\n")
    assert main(["linear-probe", *common, "--split", str(tmp_path / "train.txt"), "--test-split",
                 str(tmp_path / "test.txt"), "--percents", "100", "--seeds", "0", "--cache", str(tmp_path / "cache2"),
                 "--out", str(tmp_path / "lp2")] + FAST) == 0
    custom_probe = json.loads((tmp_path / "lp2" / "linear_probe.json").read_text())["metrics"]["100.0"]
    assert custom_probe["runs"][0]["videos"] == ["01", "02"]
    # the same videos and labels as the AutoLaparo layout: the same probe result
    assert custom_probe["f1_mean"] == pytest.approx(probe["metrics"]["100.0"]["f1_mean"])


@pytest.mark.parametrize("bench,task,video_wise", [("cholec80", "tool", False), ("cholect50", "triplet", True)])
def test_multilabel_linear_probe_cli(small_sample, tmp_path, bench, task, video_wise):
    """Multi-label rows of the table probe too: one-vs-rest logistic regression, mAP (video-wise AP
    for CholecT50 triplets); the numbers are checked against sklearn in test_linear_probe.py."""
    root = small_sample / "benchmarks" / bench
    args = ["linear-probe", "--benchmark", bench, "--task", task, "--root", str(root), "--percents", "100",
            "--seeds", "0", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "lp")] + FAST
    if bench == "cholect50":  # the sample's CholecT50 holds test videos only: train on two of them
        (tmp_path / "train.txt").write_text("6\n10\n")
        (tmp_path / "test.txt").write_text("1\n15\n")
        args += ["--split", str(tmp_path / "train.txt"), "--test-split", str(tmp_path / "test.txt")]
    assert main(args) == 0
    report = json.loads((tmp_path / "lp" / "linear_probe.json").read_text())
    entry = report["metrics"]["100.0"]
    assert "mAP_mean" in entry and "f1_mean" not in entry and "one-vs-rest" in report["protocol"]["metric"]
    assert ("video-wise" in report["protocol"]["metric"]) == video_wise

