"""``surgclip eval --suite`` fills the SurgLaVi table on the sample; YAML suites skip absent data and
refuse malformed entries; the remaining CLI rows (step, verb, custom, linear probe) run end to end."""
import csv
import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

import surgclip
from surgclip.cli import main
from surgclip.evaluation import benchmarks as B
from surgclip.evaluation.cli import limit_rows
from surgclip.evaluation.suite import SURGLAVI_SUITE, SuiteError, load_suite
from surgclip.evaluation.zeroshot import evaluate_zero_shot

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
    assert [c["column"] for c in report["cells"]] == report["columns"]
    for cell in report["cells"]:
        assert cell["checkpoint"].startswith("params-sha256:") and cell["protocol"] and cell["split"]
        assert cell["prompt_set"] in ("camma", "descriptive") and cell["frames_scored"] > 0
    md = (suite_out / "table.md").read_text()
    header, _, row = md.split("\n")[2:5]
    assert header.count("|") == len(SURGLAVI_SUITE) + 2 and "CholecT50 triplet mAP" in header
    assert " - " not in row.split("|", 2)[2]
    with open(suite_out / "table.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(SURGLAVI_SUITE)


@pytest.mark.parametrize("column", ["Cholec80 phase", "SAR-RARP50 action", "Cholec80 tool", "GraSP tool"])
def test_suite_cells_agree_with_sklearn(suite_out, small_sample, column):
    cell = next(c for c in json.loads((suite_out / "table.json").read_text())["cells"] if c["column"] == column)
    entry = next(e for e in SURGLAVI_SUITE if e["column"] == column)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = B.load_benchmark(entry["benchmark"], small_sample / "benchmarks" / cell["root"].split("/")[-1],
                                 split=entry["split"], task=entry["task"])
    table = limit_rows(table, 3)
    model, _, tokenizer = surgclip.load("tiny", device="cpu")
    prompts, _ = B.task_prompts(B.load_protocol(entry["benchmark"]), entry["task"], cell["prompt_set"], table)
    result = evaluate_zero_shot(model, tokenizer, table, prompts, num_frames=2)
    assert result.valid.all()
    if table.multilabel:
        keep = table.targets.any(0)  # classes with a positive, as the mAP convention
        ap = [average_precision_score(table.targets[:, c], result.scores[:, c]) for c in np.flatnonzero(keep)]
        assert cell["metrics"]["mAP"] == pytest.approx(np.mean(ap), abs=1e-6)
    else:
        accs, f1s = [], []
        for v in table.videos():
            m = table.video == v
            accs.append(accuracy_score(table.labels[m], result.pred[m]))
            f1s.append(f1_score(table.labels[m], result.pred[m], average="macro"))
        assert cell["metrics"]["accuracy"] == pytest.approx(np.mean(accs))
        assert cell["metrics"]["f1"] == pytest.approx(np.mean(f1s))


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
    (tmp_path / "classes.txt").write_text("\n".join(B.task_classes(B.load_protocol("autolaparo"), "phase")) + "\n")
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

