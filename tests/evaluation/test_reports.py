"""The one report writer and the one weights fingerprint: an evaluator's report and a clip index
record the same fingerprint for the same saved model."""
import json

import numpy as np

from helpers import write_video
from surgclip.checkpoint import save_pretrained, weights_hash
from surgclip.cli import main
from surgclip.evaluation import reports
from surgclip.evaluation.index import ClipIndex


def test_a_report_and_an_index_fingerprint_a_saved_model_alike(tmp_path, tiny_model):
    model_dir = save_pretrained(tiny_model[0], tmp_path / "model")
    write_video(tmp_path / "v.mp4", 6, fps=5, size=32)
    ix, out = tmp_path / "ix", tmp_path / "retrieval"
    assert main(["index", str(tmp_path / "v.mp4"), "--index", str(ix), "--model", str(model_dir), "--window-s", "2",
                 "--stride-s", "2", "--num-frames", "2"]) == 0
    (tmp_path / "pairs.csv").write_text(f"video,start,end,caption\n{tmp_path / 'v.mp4'},0,2,a clip\n"
                                        f"{tmp_path / 'v.mp4'},2,4,another clip\n")
    assert main(["retrieval", "--pairs", str(tmp_path / "pairs.csv"), "--model", str(model_dir), "--num-frames", "2",
                 "--out", str(out)]) == 0
    report = json.loads((out / "retrieval.json").read_text())
    index_report = json.loads((ix / "report.json").read_text())
    stored = ClipIndex(ix).meta["weights_hash"]
    assert stored == weights_hash(tiny_model[0])
    assert report["checkpoint"] == index_report["checkpoint"] == "params-sha256:" + stored
    assert reports.checkpoint_hash(str(model_dir), tiny_model[0]) == report["checkpoint"]  # the folder does not enter it
    assert reports.checkpoint_hash("tiny", tiny_model[0]) == report["checkpoint"]
    assert index_report["kind"] == "index" and index_report["protocol"]["window_s"] == 2.0 \
        and index_report["added"] == ["v"] and not (ix / "report.md").exists()


def test_one_writer_for_every_report(tmp_path):
    base = dict(metrics={"a": float("nan"), "b": np.float32(0.5)}, protocol={"metric": "m", "mode": "uniform",
                "num_frames": 2}, config={"model": "tiny", "benchmark": "x"}, checkpoint="params-sha256:00")
    r = reports.write_report(tmp_path, "kind1", **base, table_rows=[{"c": 1.0}], columns=["c"],
                             extra={"path": tmp_path})
    written = json.loads((tmp_path / "kind1.json").read_text())
    assert written["metrics"] == {"a": None, "b": 0.5} and written["path"] == str(tmp_path)
    assert {"kind", "created", "protocol", "config", "checkpoint", "metrics"} <= set(r)
    assert "| c |" in (tmp_path / "kind1.md").read_text() and "(params-sha256:00)" in (tmp_path / "kind1.md").read_text()
    reports.write_report(tmp_path, "training", {"x": 1.0}, checkpoint="best.ckpt", name="report", markdown="# run\n")
    assert (tmp_path / "report.md").read_text() == "# run\n"
    assert json.loads((tmp_path / "report.json").read_text())["checkpoint"] == "best.ckpt"
    reports.write_report(tmp_path / "json_only", "index", None, extra={"added": []})
    assert [p.name for p in (tmp_path / "json_only").iterdir()] == ["index.json"]
