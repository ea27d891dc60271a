"""A user's dataset without a protocol: seconds or frames, classes by name or id, multi-label."""
import pytest

from surgclip.datasets.custom import load_custom
from surgclip.datasets.table import LabelFileError


def test_custom_dataset_seconds_frames_names_ids_and_multilabel(bench_root, tmp_path):
    videos = bench_root / "autolaparo" / "videos"
    (tmp_path / "classes.txt").write_text("idle\ncutting\nsuturing\n")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "15.csv").write_text("second,label\n0,idle\n1,2\n2,cutting\n")
    (labels / "16.csv").write_text("0,1\n1,suturing\n")
    table = load_custom(tmp_path / "classes.txt", labels, videos)
    assert table.labels.tolist() == [0, 2, 1, 1, 2] and table.time_s.tolist() == [0, 1, 2, 0, 1]
    assert table.sources["15"].path == videos / "15.mp4"
    (labels / "16.csv").write_text("frame,label\n0,idle;cutting\n10,suturing\n")
    (labels / "15.csv").write_text("5,cutting\n")
    multi = load_custom(tmp_path / "classes.txt", labels, videos, label_unit="frames")
    assert multi.multilabel and multi.targets.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert multi.time_s.tolist() == [1.0, 0.0, 2.0]  # frames of the 5-fps sample videos
    (labels / "15.csv").write_text("0,idle\n1,stapling\n")
    with pytest.raises(LabelFileError, match=r"15\.csv:2: unknown class 'stapling'"):
        load_custom(tmp_path / "classes.txt", labels, videos)
    (labels / "15.csv").write_text("0,idle\n")
    with pytest.raises(FileNotFoundError, match=r"video 15: expected .*nowhere/15\.mp4"):
        load_custom(tmp_path / "classes.txt", labels, tmp_path / "nowhere")
