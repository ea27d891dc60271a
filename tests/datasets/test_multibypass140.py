"""MultiBypass140: the label reader (small file and the real files), the official fold pickles
read without running anything, the ``data splits`` command, bad files named, and the loader taking
a fold's videos."""
import json
import pathlib
import pickle
import re
import warnings

import pytest

from surgclip import datasets as D
from surgclip.cli import main
from surgclip.datasets import protocols as P
from surgclip.datasets.multibypass140 import (fold_videos, read_multibypass_json, read_multibypass_splits,
                                              write_multibypass_splits)
from surgclip.datasets.parsing import UnsafePickleError, safe_load_pickle

SPLIT_PATH = "labels/{centre}/labels_by70_splits/labels/{split}/1fps_{fold}.pickle"


def test_interval_reader_fixture(tmp_path):
    mb = tmp_path / "BBP01.mp4.json"
    mb.write_text(json.dumps({"phases": [{"start": 0, "end": 5000, "label_name": "a", "label_id": 0},
                                         {"start": 2000, "end": 3000, "label_name": "b", "label_id": 1}], "steps": []}))
    t = read_multibypass_json(mb, ["a", "b"])
    assert t.labels.tolist() == [0, 0, 1, 0, 0] and t.video[0] == "BBP01"


def test_real_multibypass(realdata):
    """Real MultiBypass140 JSONs against a direct reading: per second, the last interval in file order
    that covers it (severe_index, id 13, never counts: 13 phase classes)."""
    import json

    protocol = D.load_protocol("multibypass140")
    classes = P.class_names(protocol["classes"])
    assert len(classes) == 13 and "severe_index" not in classes
    seen_severe = False
    for site in ("bern/BBP01", "bern/BBP07", "strasbourg/SBP01", "strasbourg/SBP12"):
        path = realdata / f"labels/multibypass140/{site}.mp4.json"
        for key, names in (("phases", classes), ("steps", P.class_names(protocol["step_classes"]))):
            t = read_multibypass_json(path, names, key=key, ignore=(13,) if key == "phases" else ())
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


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src, target_is_directory=True)


def test_real_multibypass140_jsons(realdata, tmp_path):
    site_dir = realdata / "labels/multibypass140/bern"
    _link(site_dir, tmp_path / "labels/bern/labels_by70")
    protocol = D.load_protocol("bernbypass70")
    for vid in protocol["splits"]["bern"]["test"]:
        (tmp_path / "BernBypass70/frames" / f"BBP{vid:02d}").mkdir(parents=True)
    table = D.load_benchmark("bernbypass70", tmp_path, split="test", task="phase", frames_fps=1)
    assert len(table.videos()) == 20
    assert table.sources["BBP02"].first_number == 1  # util/extract_frames.py: ffmpeg numbers from 1
    # brute force for one video: the last non-ignored interval covering each second
    data = json.loads((site_dir / "BBP02.mp4.json").read_text())
    rows = table.select(table.video == "BBP02")
    for t, label in list(zip(rows.time_s, rows.labels))[::97]:
        covering = [s["label_id"] for s in data["phases"] if s["start"] / 1000 <= t < s["end"] / 1000 and s["label_id"] != 13]
        assert covering[-1] == label
    steps = D.load_benchmark("bernbypass70", tmp_path, split="test", task="step", frames_fps=1)
    assert steps.labels.max() < 46 and len(steps.classes) == 46


def test_bern_fold1_train_is_the_rest_of_the_70_videos():
    splits = D.load_protocol("bernbypass70")["splits"]["bern"]
    train, val, test = (set(splits[k]) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (40, 10, 20)
    assert not (train & val or train & test or val & test) and train | val | test == set(range(1, 71))


class _Touch:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.target),)


def _write(root, centre, split, fold, obj) -> pathlib.Path:
    path = root / SPLIT_PATH.format(centre=centre, split=split, fold=fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    path = _write(tmp_path, "bern", "test", 0, {"BBP01": [_Touch(target)]})
    with pytest.raises(UnsafePickleError, match=re.escape(path.name) + r": refused to load global pathlib.*touch"):
        safe_load_pickle(path)
    assert not target.exists()
    with pytest.raises(ValueError, match=re.escape(path.name)):  # through the reader too
        read_multibypass_splits(tmp_path)
    assert not target.exists()
    pathlib.Path.touch(target)  # the payload does work when it is allowed to run
    assert target.exists()


def test_not_a_dict_of_lists_and_not_a_pickle_name_the_file(tmp_path):
    listed = _write(tmp_path, "bern", "test", 0, ["BBP01", "BBP02"])
    with pytest.raises(ValueError, match=re.escape(str(listed)) + ": expected a dict .* found list"):
        safe_load_pickle(listed)
    bad_value = _write(tmp_path, "bern", "val", 0, {"BBP01": "not a list"})
    with pytest.raises(ValueError, match=re.escape(str(bad_value)) + ": .*'BBP01': str"):
        safe_load_pickle(bad_value)
    text = tmp_path / "text.pickle"
    text.write_text("video,split\nBBP01,test\n")
    with pytest.raises(ValueError, match=re.escape(f"{text}: not a readable pickle")):
        safe_load_pickle(text)
    truncated = tmp_path / "cut.pickle"
    truncated.write_bytes(pickle.dumps({"BBP01": [1, 2, 3]}, protocol=4)[:-5])
    with pytest.raises(ValueError, match=re.escape(f"{truncated}: not a readable pickle")):
        safe_load_pickle(truncated)


def test_folds_discovered_unknown_fold_and_split_list_what_is_present(tmp_path):
    _write(tmp_path, "bern", "test", 1, {"BBP03": [], "BBP02": []})
    _write(tmp_path, "bern", "val", 1, {"BBP12": []})
    _write(tmp_path, "bern", "test", 3, {"BBP06": []})
    _write(tmp_path, "strasbourg", "val", 0, {"SBP09": []})
    (tmp_path / "labels/bern/labels_by70_splits/labels/test/notes.pickle").write_bytes(b"ignored: not 1fps_K")
    splits = read_multibypass_splits(tmp_path)
    assert splits == {"bern": {1: {"test": ["BBP02", "BBP03"], "val": ["BBP12"]}, 3: {"test": ["BBP06"]}},
                      "strasbourg": {0: {"val": ["SBP09"]}}}
    assert fold_videos(tmp_path, "bern", 1, "test") == ["BBP02", "BBP03"]
    with pytest.raises(ValueError, match=r"no fold 2 of bern; folds present: \[1, 3\]"):
        fold_videos(tmp_path, "bern", 2, "test")
    with pytest.raises(ValueError, match=r"fold 3 of bern has no split 'train'; splits present: \['test'\]"):
        fold_videos(tmp_path, "bern", 3, "train")
    out = tmp_path / "splits.json"
    write_multibypass_splits(tmp_path, out)
    with pytest.raises(ValueError, match=re.escape(f"{out}: no fold 4 of strasbourg; folds present: [0]")):
        fold_videos(out, "strasbourg", 4, "val")
    with pytest.raises(FileNotFoundError, match=re.escape(f"no MultiBypass140 split pickles in {tmp_path / 'empty'}")):
        read_multibypass_splits(tmp_path / "empty")


def test_real_official_pickles(realdata, tmp_path):
    repo = realdata / "labels/multibypass140/splits"
    pickles = [repo / SPLIT_PATH.format(centre="bern", split="test", fold=1),
               repo / SPLIT_PATH.format(centre="strasbourg", split="val", fold=0)]
    for p in pickles:
        if not p.is_file():
            pytest.skip(f"official MultiBypass140 split pickle not available at {p}")
    splits = read_multibypass_splits(repo)
    bern, stras = splits["bern"][1]["test"], splits["strasbourg"][0]["val"]
    assert len(bern) == 20 and len(stras) == 10
    # the same ids as the protocol lists (read from the files by other means when it was written) ...
    protocol = D.load_protocol("multibypass140")
    assert bern == [f"BBP{i:02d}" for i in protocol["folds"]["bern"]["1"]["test"]]
    assert stras == [f"SBP{i:02d}" for i in protocol["folds"]["strasbourg"]["0"]["val"]]
    # ... and as the video named by every frame record's Frame_id, in records of the official shape
    for path, ids in zip(pickles, (bern, stras)):
        data = safe_load_pickle(path)
        for vid, records in data.items():
            assert records and {r["Frame_id"].rsplit("_", 1)[0] for r in records} == {vid}
            assert set(records[0]) == {"Frame_id", "Original_frame_id", "Phase_gt", "Step_gt", "unique_id"}
        assert sorted(data) == ids
    repo_root = pathlib.Path(__file__).resolve().parents[2]
    assert not [p for d in ("surgclip", "tests") for p in (repo_root / d).rglob("1fps_*.pickle")]  # never copied in


def test_cli_writes_the_splits_json_with_counts(tmp_path, capsys):
    _write(tmp_path, "bern", "train", 0, {f"BBP{i:02d}": [] for i in range(1, 41)})
    _write(tmp_path, "bern", "val", 0, {f"BBP{i:02d}": [] for i in range(41, 51)})
    _write(tmp_path, "bern", "test", 0, {f"BBP{i:02d}": [] for i in range(51, 71)})
    _write(tmp_path, "strasbourg", "val", 2, {"SBP05": [], "SBP08": []})
    out = tmp_path / "out/splits.json"
    assert main(["data", "splits", "multibypass140", "--repo", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bern fold 0: train 40, val 10, test 20 videos" in printed
    assert "strasbourg fold 2: val 2 videos" in printed
    data = json.loads(out.read_text())
    assert data["dataset"] == "multibypass140"
    assert data["splits"]["bern"]["0"]["test"] == [f"BBP{i}" for i in range(51, 71)]
    assert fold_videos(out, "strasbourg", 2, "val") == ["SBP05", "SBP08"]
    assert main(["data", "splits", "multibypass140", "--repo", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    assert "surgclip data: error: no MultiBypass140 split pickles in" in capsys.readouterr().err


def test_loader_takes_the_fold_from_the_sample_pickles_or_a_json(small_sample, tmp_path):
    root = small_sample / "benchmarks" / "multibypass140"
    for site, prefix in (("bern", "BBP"), ("strasbourg", "SBP")):
        for split in ("train", "val", "test"):
            data = safe_load_pickle(root / SPLIT_PATH.format(centre=site, split=split, fold=0))
            assert data and all(r["Frame_id"].startswith(vid) for vid, rs in data.items() for r in rs)
    expected = fold_videos(root, "bern", 0, "test")
    assert expected == ["BBP02", "BBP03"]
    table = D.load_benchmark("bernbypass70", root, split="test", fold=0)
    assert table.videos() == expected
    pickle_path = root / SPLIT_PATH.format(centre="bern", split="test", fold=0)
    assert table.split_info == {"fold": 0, "split": "test", "source": str(pickle_path)}
    assert table.select(table.video == "BBP03").split_info["fold"] == 0
    stras = D.load_benchmark("strasbypass70", root, split="test", task="step")  # fold defaults to 0
    assert stras.videos() == ["SBP09", "SBP20"] and stras.split_info["fold"] == 0
    with pytest.raises(ValueError, match=r"no fold 3 of bern; folds present: \[0\]"):
        D.load_benchmark("bernbypass70", root, split="test", fold=3)
    with pytest.raises(ValueError, match=re.escape("apply to split train | val | test, not 'all'")):
        D.load_benchmark("bernbypass70", root, split="all", fold=0)

    # a splits JSON naming a video with no label file: the error names it
    js = tmp_path / "splits.json"
    js.write_text(json.dumps({"splits": {"bern": {"2": {"test": ["BBP03", "BBP44"]}}}}))
    with pytest.raises(FileNotFoundError, match=r"fold 2 test of bern .* without a label file: BBP44"):
        D.load_benchmark("bernbypass70", root, split="test", fold=2, splits=str(js))
    js.write_text(json.dumps({"splits": {"bern": {"2": {"test": ["BBP03", "BBP12"]}}}}))
    table = D.load_benchmark("bernbypass70", root, split="test", fold=2, splits=str(js))
    assert table.videos() == ["BBP03", "BBP12"] and table.split_info["source"] == str(js)


def test_loader_without_folds_keeps_the_protocol_splits(small_sample, tmp_path):
    src = small_sample / "benchmarks" / "multibypass140"
    root = tmp_path / "mbp"
    (root / "labels/bern").mkdir(parents=True)
    (root / "labels/bern/labels_by70").symlink_to(src / "labels/bern/labels_by70", target_is_directory=True)
    (root / "BernBypass70").symlink_to(src / "BernBypass70", target_is_directory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the protocol's fold-1 test lists 20 videos, the sample has 2
        table = D.load_benchmark("bernbypass70", root, split="test")
    assert table.videos() == ["BBP02", "BBP03"] and table.split_info["fold"] is None
    with pytest.raises(FileNotFoundError, match=r"no split pickles of bern in .*labels_by70_splits/labels/test/1fps_1"):
        D.load_benchmark("bernbypass70", root, split="test", fold=1)
