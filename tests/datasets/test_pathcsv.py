"""Frame-list CSVs: PeskaVLP's 1-fps files (cholec80-csv, autolaparo-csv) and the every-100th-frame
Cholec80 CSV, bad rows named, and the real files."""
import numpy as np
import pytest

from conftest import PHASES
from surgclip import datasets as D
from surgclip.datasets import protocols as P
from surgclip.datasets.pathcsv import read_frame_label_csv
from surgclip.datasets.table import LabelFileError


def test_bad_csv_class_id(tmp_path):
    path = tmp_path / "video01.csv"
    path.write_text("path,label\nvideo01_0.png,1\nvideo01_1.png,9\n")
    with pytest.raises(LabelFileError, match=r"video01.csv:3: unknown class id 8"):
        read_frame_label_csv(path, PHASES, label_base=1)


def test_real_cholec80_csvs_agree(realdata):
    classes = P.class_names(D.load_protocol("cholec80")["classes"])
    one_fps = read_frame_label_csv(realdata / "labels/peskavlp/cholec80/video04.csv", classes, label_base=1)
    every100 = read_frame_label_csv(realdata / "labels/cholec80_every100frames/video_4.csv", classes,
                                      label_base=0, frame_fps=25)
    by_time = dict(zip(one_fps.time_s.tolist(), one_fps.labels.tolist()))
    assert len(every100) == 381
    assert all(by_time[t] == l for t, l in zip(every100.time_s.tolist(), every100.labels.tolist()) if t in by_time)
    table = D.load_benchmark("cholec80-csv", realdata / "labels/peskavlp/cholec80", split="test")
    assert table.videos()[0] == "video49" and len(table.videos()) == 32
    auto = D.load_benchmark("autolaparo-csv", realdata / "labels/peskavlp/autolaparo", split="test")
    assert len(auto.videos()) == 7 and set(np.unique(auto.labels)) <= set(range(7))


def test_real_peskavlp_cholec80_and_autolaparo_csvs(realdata):
    c80 = D.load_benchmark("cholec80-csv", realdata / "labels/peskavlp/cholec80", split="test")
    assert sorted(set(c80.videos())) == [f"video{i:02d}" for i in range(49, 81)]
    first = (realdata / "labels/peskavlp/cholec80/video49.csv").read_text().splitlines()[1].split(",")
    assert c80.labels[0] == int(first[1]) - 1
    auto = D.load_benchmark("autolaparo-csv", realdata / "labels/peskavlp/autolaparo", split="test")
    assert sorted(set(auto.videos())) == [f"{i:02d}" for i in range(15, 22)] and auto.labels.max() <= 6
