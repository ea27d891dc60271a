"""HeiChole: the two CSV readers on hand-written rows, bad rows named by file:line, the loader on the
release layout (video file and frame folder, 25- and 50-fps label numbering), and the bundled sample."""
import json
import warnings

import numpy as np
import pytest

from helpers import write_frames, write_video
from surgclip import datasets as D
from surgclip.datasets import protocols as P
from surgclip.datasets.heichole import detailed_columns, read_heichole_instrument, read_heichole_phase
from surgclip.datasets.table import LabelFileError

PROTOCOL = D.load_protocol("heichole")
PHASES = P.task_classes(PROTOCOL, "phase")
CATEGORIES = P.task_classes(PROTOCOL, "instrument")


def _flags(on, width=21):
    return ",".join("1" if k in on else "0" for k in range(width))


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_protocol_classes_splits_and_prompts():
    assert PHASES[1] == "Calot triangle dissection" and len(PHASES) == 7
    assert CATEGORIES == ["Grasper", "Clipper", "Coagulation instruments", "Scissors", "Suction-irrigation",
                          "Specimen bag", "Stapler"]
    splits = PROTOCOL["splits"]
    assert splits["test"] == splits["challenge-train"] == list(range(1, 25))
    assert splits["challenge-test"] == list(range(25, 34)) and "train" not in splits
    assert P.task_prompts(PROTOCOL, "phase", None)[1] == "camma"
    assert P.task_prompts(PROTOCOL, "instrument", None)[1] == "descriptive"
    for task in ("phase", "instrument"):
        assert len(P.task_prompts(PROTOCOL, task, "names")[0]) == 7
    # the detailed file's 21 instruments fall into the 7 categories; the undefined shaft (30) into none
    cols = detailed_columns(PROTOCOL)
    assert len(cols) == 31 and cols[6] == 2 and cols[9] == 1 and cols[20] == 6 and cols[30] is None
    assert sorted({c for c in cols if c is not None}) == list(range(7))


def test_phase_reader_rows(tmp_path):
    path = _write(tmp_path / "Hei-Chole7_Annotation_Phase.csv", "0,0\n1,0\n25,1\n50,6,\n")
    table = read_heichole_phase(path, PHASES, label_fps=25)
    assert table.videos() == ["Hei-Chole7"] and not table.multilabel
    assert table.frame.tolist() == [0, 1, 25, 50] and table.labels.tolist() == [0, 0, 1, 6]
    assert table.time_s.tolist() == [0.0, 0.04, 1.0, 2.0]
    headed = _write(tmp_path / "h.csv", "Frame,Phase\n0,3\n")
    assert read_heichole_phase(headed, PHASES, video="v").labels.tolist() == [3]


def test_instrument_reader_category_and_detailed_files(tmp_path):
    path = _write(tmp_path / "Hei-Chole7_Annotation_Instrument.csv",
                  f"0,{_flags([])}\n1,{_flags([0, 2])}\n2,{_flags([5, 20])}\n3,{_flags([1, 3, 4, 6])}\n")
    table = read_heichole_instrument(path, CATEGORIES)
    assert table.multilabel and table.videos() == ["Hei-Chole7"] and table.frame.tolist() == [0, 1, 2, 3]
    assert table.targets.tolist() == [[0] * 7, [1, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0], [0, 1, 0, 1, 1, 0, 1]]
    # Detailed file: atraumatic grasper (3) + electric hook (6); Hem-O-Lok clip applier (9) + undefined shaft (30)
    detailed = _write(tmp_path / "d.csv", f"0,{_flags([3, 6], 31)}\n25,{_flags([9, 30], 31)}\n")
    table = read_heichole_instrument(detailed, CATEGORIES, columns=detailed_columns(PROTOCOL))
    assert table.targets.tolist() == [[1, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]]
    with pytest.raises(LabelFileError, match=r"d\.csv:1: expected 22 comma-separated fields .* found 32"):
        read_heichole_instrument(detailed, CATEGORIES)


@pytest.mark.parametrize("reader,text,message", [
    (read_heichole_phase, "0,1\n1;1\n", r"x\.csv:2: expected 2 comma-separated fields"),
    (read_heichole_phase, "0,1\n1,7\n", r"x\.csv:2: unknown class id 7; expected 0\.\.6"),
    (read_heichole_phase, "0,1\n-1,1\n", r"x\.csv:2: frame index must be >= 0"),
    (read_heichole_phase, "0,1\n\n2,one\n", r"x\.csv:3: expected an integer phase id, found 'one'"),
    (read_heichole_instrument, f"0,{_flags([])}\n1,{_flags([])},1\n", r"x\.csv:2: expected 22 comma-separated"),
    (read_heichole_instrument, f"0,{_flags([])}\n1,2{_flags([])[1:]}\n", r"x\.csv:2: instrument flag 0 must be 0 or 1"),
])
def test_bad_rows_name_file_and_line(tmp_path, reader, text, message):
    path = _write(tmp_path / "x.csv", text)
    with pytest.raises(LabelFileError, match=message):
        reader(path, PHASES if reader is read_heichole_phase else CATEGORIES)


@pytest.fixture(scope="module")
def release_root(tmp_path_factory):
    """Hei-Chole3 as a 4-s video with 25-fps labels; Hei-Chole17 as a 1-fps frame folder with 50-fps
    labels (its release rate) and lower-case file names, as some copies have."""
    root = tmp_path_factory.mktemp("heichole")
    write_video(root / "Videos" / "Full" / "Hei-Chole3.mp4", 4, seed=3)
    _write(root / "Annotations/Phase/Hei-Chole3_Annotation_Phase.csv", "".join(f"{f},{f // 25}\n" for f in range(100)))
    _write(root / "Annotations/Instrument/Hei-Chole3_Annotation_Instrument.csv",
           "".join(f"{f},{_flags([f // 25, 20])}\n" for f in range(100)))
    write_frames(root / "frames" / "Hei-Chole17", range(3))
    _write(root / "Annotations/Phase/hei-chole17_annotation_phase.csv", "".join(f"{f},{6 - f // 50}\n" for f in range(150)))
    _write(root / "Annotations/Instrument/hei-chole17_annotation_instrument.csv",
           "".join(f"{f},{_flags([6])}\n" for f in range(150)))
    _write(root / "Annotations/Instrument/Hei-Chole3_Annotation_Instrument_Detailed.csv", "not read\n")
    return root


def test_load_benchmark_release_layout(release_root):
    with pytest.warns(UserWarning, match=r"22 of 24 videos have no label file .*Hei-Chole1_Annotation_Phase\.csv"):
        phase = D.load_benchmark("heichole", release_root, split="test", task="phase", frames_fps=1)
    assert phase.name == "heichole/phase" and phase.videos() == ["Hei-Chole3", "Hei-Chole17"]
    assert phase.frame.tolist() == [0, 25, 50, 75, 0, 50, 100]  # 1 fps of 25- and 50-fps numbering
    assert phase.time_s.tolist() == [0, 1, 2, 3, 0, 1, 2] and phase.labels.tolist() == [0, 1, 2, 3, 6, 5, 4]
    assert phase.sources["Hei-Chole3"].path == release_root / "Videos" / "Full" / "Hei-Chole3.mp4"
    assert phase.sources["Hei-Chole17"].path == release_root / "frames" / "Hei-Chole17"
    assert phase.sources["Hei-Chole17"].fps == 1.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tools = D.load_benchmark("heichole", release_root, split="test", task="instrument", frames_fps=1)
    assert tools.multilabel and tools.classes == CATEGORIES and len(tools) == 7
    assert tools.targets[:4].tolist() == np.eye(7, dtype=int)[:4].tolist()  # flag 20 (undefined shaft) ignored
    assert tools.targets[4:].tolist() == [[0, 0, 0, 0, 0, 0, 1]] * 3
    prompts, name = P.task_prompts(PROTOCOL, "instrument", None, tools)
    assert name == "descriptive" and len(prompts) == 7


def test_load_benchmark_errors_name_the_expected_paths(release_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Annotations/Phase/Hei-Chole25_Annotation_Phase\.csv"):
        D.load_benchmark("heichole", release_root, split="challenge-test", task="phase")
    with pytest.raises(ValueError, match=r"no split 'train'.*challenge-test"):
        D.load_benchmark("heichole", release_root, split="train")
    with pytest.raises(ValueError, match="no task 'action'"):
        D.load_benchmark("heichole", release_root, split="test", task="action")
    _write(tmp_path / "Annotations/Phase/Hei-Chole2_Annotation_Phase.csv", "0,0\n")
    with pytest.raises(FileNotFoundError, match=r"video Hei-Chole2: expected .*Videos/Full/Hei-Chole2\.mp4 .*frames/Hei-Chole2/"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            D.load_benchmark("heichole", tmp_path, split="test")


@pytest.mark.parametrize("task,multilabel", [("phase", False), ("instrument", True)])
def test_bundled_sample_has_heichole(small_sample, task, multilabel):
    root = small_sample / "benchmarks" / "heichole"
    assert "heichole" in json.loads((small_sample / "manifest.json").read_text())["benchmarks"]["benchmarks"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = D.load_benchmark("heichole", root, split="test", task=task)
        held = D.load_benchmark("heichole", root, split="challenge-test", task=task)
    assert test.videos() == ["Hei-Chole1", "Hei-Chole2"] and held.videos() == ["Hei-Chole25", "Hei-Chole26"]
    for table in (test, held):
        assert len(table.classes) == 7 and table.multilabel == multilabel
        assert len(table) == 20 and table.time_s.tolist() == list(range(10)) * 2  # 10-s videos at 1 fps
        assert set(table.sources) == set(table.videos()) and all(s.path.is_file() for s in table.sources.values())
    if multilabel:
        assert (test.targets.sum(1) == 1).all()  # one sample tool per frame, one category
    else:
        rows = (root / "Annotations/Phase/Hei-Chole1_Annotation_Phase.csv").read_text().splitlines()
        assert test.labels[:10].tolist() == [int(rows[5 * s].split(",")[1]) for s in range(10)]  # 5-fps sample videos
