"""Protocols shipped in the package, every (benchmark, task) loaded from its official layout, bad
input named by path/row, fps.json forms, custom datasets, and the real label files."""
import json
import shutil
import warnings

import numpy as np
import pytest

from surgclip.evaluation import benchmarks as B
from surgclip.evaluation import loaders as L
from surgclip.evaluation.table import LabelFileError

ROWS = [  # (benchmark, sample folder, task, split, expected classes, multilabel)
    ("cholec80", "cholec80", "phase", "test", 7, False),
    ("cholec80", "cholec80", "tool", "test", 7, True),
    ("autolaparo", "autolaparo", "phase", "test", 7, False),
    ("strasbypass70", "multibypass140", "phase", "all", 13, False),
    ("strasbypass70", "multibypass140", "step", "all", 46, False),
    ("bernbypass70", "multibypass140", "phase", "test", 13, False),
    ("bernbypass70", "multibypass140", "step", "test", 46, False),
    ("grasp", "grasp", "phase", "test", 11, False),
    ("grasp", "grasp", "step", "test", 21, False),
    ("grasp", "grasp", "instrument", "test", 7, True),
    ("sarrarp50", "sarrarp50", "action", "test", 8, False),
    ("cholect50", "cholect50", "triplet", "test", 100, True),
    ("cholect50", "cholect50", "instrument", "test", 6, True),
    ("cholect50", "cholect50", "verb", "test", 10, True),
    ("cholect50", "cholect50", "target", "test", 15, True),
    ("surglavi", "surglavi", "phase", "all", 7, False),
]


@pytest.fixture(scope="module")
def bench_root(small_sample):
    return small_sample / "benchmarks"


def test_protocols_ship_in_the_package_with_two_prompt_sets_per_task():
    import surgclip

    assert B.PROTOCOL_DIR.parent == __import__("pathlib").Path(surgclip.__file__).parent
    assert not hasattr(B, "EVAL_DIR")
    for path in sorted(B.PROTOCOL_DIR.glob("*.json")):
        protocol = json.loads(path.read_text())
        assert protocol["layout"], path.name
        for task, spec in (protocol.get("tasks") or {}).items():
            classes = B.task_classes(protocol, task)
            sets = protocol[spec["prompts"]]
            assert {"descriptive"} <= set(sets), (path.name, task)
            for name in set(sets) | {"names"}:
                assert len(B.get_prompts(protocol, name, classes, key=spec["prompts"])) == len(classes)


def test_official_splits_and_class_lists():
    c50 = B.load_protocol("cholect50")
    assert c50["splits"]["challenge-test"] == [92, 96, 103, 110, 111]
    assert sorted(sum((c50["splits"][f"fold{k}"] for k in range(1, 6)), [])) == sorted(
        c50["splits"]["train"] + c50["splits"]["val"] + c50["splits"]["test"])
    assert B.load_protocol("sarrarp50")["splits"]["test"] == list(range(41, 51))
    assert B.load_protocol("autolaparo")["splits"]["test"] == list(range(15, 22))
    mbp = B.load_protocol("bernbypass70")
    assert len(mbp["splits"]["bern"]["test"]) == 20 and len(B.task_classes(mbp, "step")) == 46
    assert B.task_classes(B.load_protocol("grasp"), "instrument")[0] == "Bipolar Forceps"  # ids 1-7 as released


@pytest.mark.parametrize("name,folder,task,split,num_classes,multilabel", ROWS)
def test_every_benchmark_task_loads_from_the_sample_layout(bench_root, name, folder, task, split, num_classes, multilabel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = B.load_benchmark(name, bench_root / folder, split=split, task=task)
    assert len(table.classes) == num_classes and table.multilabel == multilabel
    assert len(table) > 0 and set(table.sources) == set(table.videos())
    assert all(s.path.exists() for s in table.sources.values())
    prompts, set_name = B.task_prompts(B.load_protocol(name), task, None, table)
    assert len(prompts) == num_classes and set_name in ("camma", "descriptive")


def test_fps_json_frames_fps_form_is_accepted_by_cholec80(bench_root, tmp_path):
    """issue 10: {"frames_fps": 1} (the documented form) used to crash the Cholec80 loader."""
    root = tmp_path / "c80"
    shutil.copytree(bench_root / "cholec80" / "phase_annotations", root / "phase_annotations")
    for vid in ("video49", "video50"):
        (root / "frames" / vid).mkdir(parents=True)
        for s in range(3):
            (root / "frames" / vid / f"{s}.jpg").write_bytes(b"")
    (root / "fps.json").write_text('{"frames_fps": 1}')
    table = B.load_cholec80(root, split="test", label_fps=5)
    assert {s.fps for s in table.sources.values()} == {1.0}
    assert B.read_dataset_fps(root) is None
    (root / "fps.json").write_text('{"frames_fps": "fast"}')
    with pytest.raises(ValueError, match="fps.json frames_fps: fps must be a number"):
        B.load_cholec80(root, split="test", label_fps=5)


@pytest.mark.parametrize("folder", ["autolaparo", "sarrarp50", "multibypass140"])
def test_fps_json_frames_fps_form_is_accepted_by_every_loader(bench_root, tmp_path, folder):
    root = tmp_path / folder
    shutil.copytree(bench_root / folder, root)
    (root / "fps.json").write_text('{"frames_fps": 1}')
    name = {"multibypass140": "bernbypass70"}.get(folder, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(B.load_benchmark(name, root, split="test")) > 0


def test_missing_label_video_and_split_name_the_expected_path(bench_root, tmp_path):
    root = tmp_path / "ct50"
    shutil.copytree(bench_root / "cholect50" / "labels", root / "labels")
    with pytest.raises(FileNotFoundError, match=r"VID92\.json"):
        B.load_benchmark("cholect50", root, split="challenge-test", task="triplet")
    with pytest.raises(FileNotFoundError, match=r"video VID06: expected .*videos/VID06\.mp4 .* or .*videos/VID06/"):
        B.load_benchmark("cholect50", root, split="test", task="triplet")
    with pytest.raises(ValueError, match="no split 'nope'"):
        B.load_benchmark("cholect50", root, split="nope")
    with pytest.raises(FileNotFoundError, match=r"grasp_long-term_test\.json"):
        B.load_benchmark("grasp", tmp_path, split="test", task="phase")
    with pytest.raises(FileNotFoundError, match=r"video_41/action_discrete\.txt"):
        B.load_benchmark("sarrarp50", tmp_path, split="test")


def test_unknown_class_id_names_file_and_row(bench_root, tmp_path):
    root = tmp_path / "sar"
    shutil.copytree(bench_root / "sarrarp50", root)
    path = root / "video_41" / "action_discrete.txt"
    lines = path.read_text().splitlines()
    lines[4] = "24,9"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelFileError, match=r"video_41/action_discrete\.txt:5: unknown class id 9"):
        B.load_benchmark("sarrarp50", root, split="test")


def test_fewer_prompts_than_classes_says_which_classes_lack_one(tmp_path):
    protocol = B.load_protocol("autolaparo")
    classes = B.task_classes(protocol, "phase")
    short = tmp_path / "p.txt"
    short.write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(ValueError, match=r"classes without a prompt \(id:name\): \['5:Suturing', '6:Washing'\]"):
        B.get_prompts(protocol, str(short), classes)
    named = tmp_path / "named.txt"
    named.write_text("Preparation\tthe start\nWashing\tthe end\n")
    with pytest.raises(ValueError, match="no prompt for classes .*'DividingLigamentAndPeritoneum'"):
        B.get_prompts(protocol, str(named), classes)


def test_custom_dataset_seconds_frames_names_ids_and_multilabel(bench_root, tmp_path):
    videos = bench_root / "autolaparo" / "videos"
    (tmp_path / "classes.txt").write_text("idle\ncutting\nsuturing\n")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "15.csv").write_text("second,label\n0,idle\n1,2\n2,cutting\n")
    (labels / "16.csv").write_text("0,1\n1,suturing\n")
    table = L.load_custom(tmp_path / "classes.txt", labels, videos)
    assert table.labels.tolist() == [0, 2, 1, 1, 2] and table.time_s.tolist() == [0, 1, 2, 0, 1]
    assert table.sources["15"].path == videos / "15.mp4"
    (labels / "16.csv").write_text("frame,label\n0,idle;cutting\n10,suturing\n")
    (labels / "15.csv").write_text("5,cutting\n")
    multi = L.load_custom(tmp_path / "classes.txt", labels, videos, label_unit="frames")
    assert multi.multilabel and multi.targets.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert multi.time_s.tolist() == [1.0, 0.0, 2.0]  # frames of the 5-fps sample videos
    (labels / "15.csv").write_text("0,idle\n1,stapling\n")
    with pytest.raises(LabelFileError, match=r"15\.csv:2: unknown class 'stapling'"):
        L.load_custom(tmp_path / "classes.txt", labels, videos)
    (labels / "15.csv").write_text("0,idle\n")
    with pytest.raises(FileNotFoundError, match=r"video 15: expected .*nowhere/15\.mp4"):
        L.load_custom(tmp_path / "classes.txt", labels, tmp_path / "nowhere")


# --------------------------------------------------------------------------- real label files


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src, target_is_directory=True)


def test_real_multibypass140_jsons(realdata, tmp_path):
    site_dir = realdata / "labels/multibypass140/bern"
    _link(site_dir, tmp_path / "labels/bern/labels_by70")
    protocol = B.load_protocol("bernbypass70")
    for vid in protocol["splits"]["bern"]["test"]:
        (tmp_path / "BernBypass70/frames" / f"BBP{vid:02d}").mkdir(parents=True)
    table = B.load_benchmark("bernbypass70", tmp_path, split="test", task="phase", frames_fps=1)
    assert len(table.videos()) == 20
    assert table.sources["BBP02"].first_number == 1  # util/extract_frames.py: ffmpeg numbers from 1
    # brute force for one video: the last non-ignored interval covering each second
    data = json.loads((site_dir / "BBP02.mp4.json").read_text())
    rows = table.select(table.video == "BBP02")
    for t, label in list(zip(rows.time_s, rows.labels))[::97]:
        covering = [s["label_id"] for s in data["phases"] if s["start"] / 1000 <= t < s["end"] / 1000 and s["label_id"] != 13]
        assert covering[-1] == label
    steps = B.load_benchmark("bernbypass70", tmp_path, split="test", task="step", frames_fps=1)
    assert steps.labels.max() < 46 and len(steps.classes) == 46


def test_real_cholect50_json_and_challenge_txt(realdata, tmp_path):
    _link(realdata / "labels/cholect50_val/labels", tmp_path / "json/labels")
    for comp in ("triplet", "instrument", "verb", "target"):
        _link(realdata / f"labels/peskavlp/cholect50_challenge_train/{comp}", tmp_path / f"txt/{comp}")
    ids = [73, 74]
    (tmp_path / "ids.txt").write_text("\n".join(map(str, ids)))
    for sub in ("json", "txt"):
        for vid in ids:
            (tmp_path / sub / "videos" / f"VID{vid}").mkdir(parents=True)
    for comp in ("triplet", "instrument", "verb", "target"):
        js = B.load_benchmark("cholect50", tmp_path / "json", split=str(tmp_path / "ids.txt"), task=comp)
        tx = B.load_benchmark("cholect50-txt", tmp_path / "txt", split=str(tmp_path / "ids.txt"), task=comp)
        assert js.classes == tx.classes and js.multilabel and tx.multilabel
        both = {(v, f) for v, f in zip(js.video, js.frame)} & {(v, f) for v, f in zip(tx.video, tx.frame)}
        assert len(both) > 300  # the JSON's annotated frames of VID73 + VID74
        a = {(v, f): t for v, f, t in zip(js.video, js.frame, js.targets)}
        b = {(v, f): t for v, f, t in zip(tx.video, tx.frame, tx.targets)}
        agree = np.mean([np.array_equal(a[k], b[k]) for k in both])
        print(f"{comp}: JSON and challenge .txt identical on {agree:.1%} of {len(both)} frames")
        # the challenge files mark more components than the JSON (known), never fewer
        assert all(np.all(a[k] <= b[k]) for k in both), comp
        assert agree > 0.5, (comp, agree)


def test_real_peskavlp_cholec80_and_autolaparo_csvs(realdata):
    c80 = B.load_benchmark("cholec80-csv", realdata / "labels/peskavlp/cholec80", split="test")
    assert sorted(set(c80.videos())) == [f"video{i:02d}" for i in range(49, 81)]
    first = (realdata / "labels/peskavlp/cholec80/video49.csv").read_text().splitlines()[1].split(",")
    assert c80.labels[0] == int(first[1]) - 1
    auto = B.load_benchmark("autolaparo-csv", realdata / "labels/peskavlp/autolaparo", split="test")
    assert sorted(set(auto.videos())) == [f"{i:02d}" for i in range(15, 22)] and auto.labels.max() <= 6


def test_bern_fold1_train_is_the_rest_of_the_70_videos():
    splits = B.load_protocol("bernbypass70")["splits"]["bern"]
    train, val, test = (set(splits[k]) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (40, 10, 20)
    assert not (train & val or train & test or val & test) and train | val | test == set(range(1, 71))
