"""Label-format readers: small fixtures in each official format, bad input, and the real files."""
import json

import numpy as np
import pytest

from surgclip.evaluation import benchmarks as B
from surgclip.evaluation import formats as F
from surgclip.evaluation.table import LabelFileError

from .conftest import PHASES, TOOLS


def test_cholec80_phase_and_tool(cholec_root):
    table = B.load_cholec80(cholec_root, split="test")  # videos 49, 50 are test videos
    assert table.videos() == ["video49", "video50"]
    assert len(table) == 16  # 8 s each, subsampled from 25-fps labels to 1 fps
    assert np.allclose(table.time_s[:8], np.arange(8)) and table.frame[1] == 25
    tools = B.load_cholec80(cholec_root, split="all", task="tool")
    assert tools.multilabel and tools.targets.shape == (16, 7) and tools.classes == TOOLS
    assert set(table.sources) == {"video49", "video50"}


def test_cholec80_label_fps_override(cholec_root):
    table = B.load_cholec80(cholec_root, split="all", label_fps=50, eval_fps=1)
    assert table.time_s.max() == pytest.approx(3.0)  # 200 frames at 50 fps


@pytest.mark.parametrize("content,needle", [
    ("Frame\tPhase\n0\tPreparation\n1\tNotAPhase\n", ":3: unknown phase 'NotAPhase'"),
    ("Frame\tPhase\n0\tPreparation\nx\tPreparation\n", ":3: expected an integer frame index"),
    ("Frame\tPhase\n0\tPreparation\textra\n", ":2: expected 2 tab-separated fields"),
])
def test_bad_phase_file_names_file_and_line(tmp_path, content, needle):
    path = tmp_path / "video01-phase.txt"
    path.write_text(content)
    with pytest.raises(LabelFileError, match=needle.replace("(", r"\(")) as err:
        F.read_cholec80_phase(path, PHASES)
    assert str(path) in str(err.value)


def test_bad_csv_class_id(tmp_path):
    path = tmp_path / "video01.csv"
    path.write_text("path,label\nvideo01_0.png,1\nvideo01_1.png,9\n")
    with pytest.raises(LabelFileError, match=r"video01.csv:3: unknown class id 8"):
        F.read_frame_label_csv(path, PHASES, label_base=1)


def test_tool_header_must_match(tmp_path):
    path = tmp_path / "video01-tool.txt"
    path.write_text("Frame\tGrasper\tHook\n0\t1\t0\n")
    with pytest.raises(LabelFileError, match=":1: tool columns"):
        F.read_cholec80_tool(path, TOOLS)


def test_prompt_count_must_match():
    protocol = B.load_protocol("cholec80")
    with pytest.raises(ValueError, match="3 prompts for 7 classes"):
        B.get_prompts({"name": "x", "prompts": {"p": ["a", "b", "c"]}}, "p", PHASES)
    assert len(B.get_prompts(protocol, "surgclip", PHASES)) == 7


def test_sarrarp50_multibypass_grasp_surglavi_fixtures(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "action_discrete.txt").write_text("0,0\n6,3\n12,7\n")
    t = F.read_sarrarp50(tmp_path / "v1" / "action_discrete.txt", [str(i) for i in range(8)], label_fps=60)
    assert t.labels.tolist() == [0, 3, 7] and t.time_s[1] == pytest.approx(0.1) and t.video[0] == "v1"
    (tmp_path / "v1" / "action_discrete.txt").write_text("0,0\n6,8\n")
    with pytest.raises(LabelFileError, match="action_discrete.txt:2: unknown class id 8"):
        F.read_sarrarp50(tmp_path / "v1" / "action_discrete.txt", [str(i) for i in range(8)])

    mb = tmp_path / "BBP01.mp4.json"
    mb.write_text(json.dumps({"phases": [{"start": 0, "end": 5000, "label_name": "a", "label_id": 0},
                                         {"start": 2000, "end": 3000, "label_name": "b", "label_id": 1}], "steps": []}))
    t = F.read_multibypass_json(mb, ["a", "b"])
    assert t.labels.tolist() == [0, 0, 1, 0, 0] and t.video[0] == "BBP01"

    grasp = tmp_path / "grasp.json"
    grasp.write_text(json.dumps({
        "phases_categories": [{"id": 1, "name": "p1"}, {"id": 2, "name": "p2"}],
        "instruments_categories": [{"id": 1, "name": "i1"}, {"id": 2, "name": "i2"}, {"id": 3, "name": "i3"}],
        "images": [{"id": 1, "file_name": "CASE001/00000.jpg"}, {"id": 2, "file_name": "CASE001/00030.jpg"}],
        "annotations": [{"image_id": 1, "phases": 2, "category_id": 3}, {"image_id": 2, "phases": 1, "category_id": 1},
                        {"image_id": 2, "phases": 1, "category_id": 2}]}))
    p = F.read_grasp_json(grasp, "phases", frame_fps=30)
    assert p.labels.tolist() == [1, 0] and p.time_s.tolist() == [0.0, 1.0] and p.video[0] == "CASE001"
    i = F.read_grasp_json(grasp, "instruments")
    assert i.targets.tolist() == [[0, 0, 1], [1, 1, 0]]
    # the released short-term file names the instruments COCO "categories" (TAPIS renames them)
    released = json.loads(grasp.read_text())
    released["categories"] = released.pop("instruments_categories")
    grasp.write_text(json.dumps(released))
    assert F.read_grasp_json(grasp, "instruments").targets.tolist() == [[0, 0, 1], [1, 1, 0]]
    del released["categories"]
    grasp.write_text(json.dumps(released))
    with pytest.raises(F.LabelFileError, match=r"grasp.json: no instruments_categories or categories"):
        F.read_grasp_json(grasp, "instruments")

    coco = tmp_path / "eval.json"
    coco.write_text(json.dumps({"categories": [{"id": 5, "name": "cut", "description": "scissors cut the duct"},
                                               {"id": 7, "name": "clip", "description": "a clip is applied"}],
                                "images": [{"id": 1, "video": "v", "frame": 3}, {"id": 2, "video": "v", "frame": 4}],
                                "annotations": [{"image_id": 1, "category_id": 7}, {"image_id": 2, "category_id": 5}]}))
    (tmp_path / "frames.csv").write_text("video,frame\nv,4\n")
    t, prompts = F.read_surglavi_eval(coco, tmp_path / "frames.csv")
    assert prompts == ["scissors cut the duct", "a clip is applied"] and t.labels.tolist() == [0]


def test_real_cholec80_csvs_agree(realdata):
    classes = B.class_names(B.load_protocol("cholec80")["classes"])
    one_fps = F.read_frame_label_csv(realdata / "labels/peskavlp/cholec80/video04.csv", classes, label_base=1)
    every100 = F.read_frame_label_csv(realdata / "labels/cholec80_every100frames/video_4.csv", classes,
                                      label_base=0, frame_fps=25)
    by_time = dict(zip(one_fps.time_s.tolist(), one_fps.labels.tolist()))
    assert len(every100) == 381
    assert all(by_time[t] == l for t, l in zip(every100.time_s.tolist(), every100.labels.tolist()) if t in by_time)
    table = B.load_csv_benchmark("cholec80", realdata / "labels/peskavlp/cholec80", split="test")
    assert table.videos()[0] == "video49" and len(table.videos()) == 32
    auto = B.load_csv_benchmark("autolaparo", realdata / "labels/peskavlp/autolaparo", split="test")
    assert len(auto.videos()) == 7 and set(np.unique(auto.labels)) <= set(range(7))


def test_real_cholect50_json_matches_challenge_txt(realdata):
    protocol = B.load_protocol("cholect50")
    comps = {k: B.class_names(v) for k, v in protocol["components"].items()}
    sizes = {k: len(v) for k, v in comps.items()}
    for comp in ("triplet", "instrument", "verb", "target"):
        js = F.read_cholect50_json(realdata / "labels/cholect50_val/labels/VID73.json", sizes, comp)
        txt = F.read_cholect50_txt(realdata / f"labels/peskavlp/cholect50_challenge_train/{comp}/VID73.txt",
                                   comps[comp], component=comp)
        common = np.intersect1d(js.frame, txt.frame)
        assert len(common) > 50
        a = js.targets[np.searchsorted(js.frame, common)]
        b = txt.targets[np.searchsorted(txt.frame, common)]
        if comp == "triplet":
            assert (a == b).mean() > 0.99
        else:  # the challenge txt also marks components seen outside any annotated triplet instance
            assert (a <= b).mean() > 0.99, comp


def test_real_multibypass(realdata):
    """Real MultiBypass140 JSONs against a direct reading: per second, the last interval in file order
    that covers it (severe_index, id 13, never counts: 13 phase classes)."""
    import json

    protocol = B.load_protocol("multibypass140")
    classes = B.class_names(protocol["classes"])
    assert len(classes) == 13 and "severe_index" not in classes
    seen_severe = False
    for site in ("bern/BBP01", "bern/BBP07", "strasbourg/SBP01", "strasbourg/SBP12"):
        path = realdata / f"labels/multibypass140/{site}.mp4.json"
        for key, names in (("phases", classes), ("steps", B.class_names(protocol["step_classes"]))):
            t = F.read_multibypass_json(path, names, key=key, ignore=(13,) if key == "phases" else ())
            intervals = json.loads(path.read_text())[key]
            seen_severe |= any(seg["label_id"] == 13 for seg in intervals) and key == "phases"
            expected = {}
            for second in range(int(max(seg["end"] for seg in intervals) / 1000) + 1):
                for seg in intervals:
                    if seg["start"] / 1000 <= second < seg["end"] / 1000 and not (key == "phases" and seg["label_id"] == 13):
                        expected[second] = seg["label_id"]
            got = dict(zip(t.time_s.astype(int).tolist(), t.labels.tolist()))
            assert got == expected, (site, key)
    assert seen_severe  # the files do mark severe_index intervals, and they were left out
