"""``surgclip data import``: a lab's own caption pairs -> a SurgLaVi-schema database that CaptionDB
reads back exactly; bad rows are named by line, or skipped and counted; the write is atomic."""
import json
import sqlite3

import pytest

from helpers import write_video
from surgclip.cli import main
from surgclip.data.db import CaptionDB
from surgclip.data.importer import PairsError, import_pairs, parse_time


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "case1.mp4", 6, fps=5, size=64, seed=1)
    write_video(root / "case2" / "case2.mp4", 4, fps=5, size=64, seed=2)
    return root


def test_pairs_become_a_database_caption_db_reads(videos, tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("video,start,end,caption,level\n"
                     "case1.mp4,0,2.5,The surgeon dissects Calot's triangle,task\n"
                     "case1,00:02.5,00:06,clipping the cystic duct,2\n"
                     "case2,1,3,Retraction of the gallbladder,phase\n"
                     "case2,0,1,coagulation of the liver bed,\n")
    out = tmp_path / "captions.sqlite"
    assert main(["data", "import", str(pairs), "--videos", str(videos), "--out", str(out)]) == 0
    assert "4 captions (task 2, step 1, phase 1) over 2 videos" in capsys.readouterr().out
    table = CaptionDB(out).select(levels=(1, 2, 3))
    rows = sorted(zip(table.video_name, table.start_s.tolist(), table.end_s.tolist(), table.level.tolist(),
                      table.caption))
    assert rows == [("case1", 0.0, 2.5, 1, "dissects calots triangle"), ("case1", 2.5, 6.0, 2, "clipping the cystic duct"),
                    ("case2", 0.0, 1.0, 1, "coagulation of the liver bed"), ("case2", 1.0, 3.0, 3, "retraction of the gallbladder")]
    con = sqlite3.connect(out)
    assert con.execute("SELECT name, fps, frame_count, width, height FROM videos ORDER BY name").fetchall() == \
        [("case1", 5.0, 30, 64, 64), ("case2", 5.0, 20, 64, 64)]


def test_bad_rows_are_named_by_line_or_skipped_and_counted(videos, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    lines = [{"video": "case1", "start": 0, "end": 2, "caption": "ok"},
             {"video": "nowhere", "start": 0, "end": 2, "caption": "x"},
             {"video": "case1", "start": 3, "end": 3, "caption": "x"},
             {"video": "case1", "start": 0, "end": 2, "caption": "  "},
             {"video": "case1", "start": 0, "end": 2, "caption": "x", "level": "organ"},
             {"video": "case2", "start": 1, "end": 9, "caption": "past the end"},
             {"video": "case2", "start": "soon", "end": 2, "caption": "x"}]
    pairs.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    out = tmp_path / "db.sqlite"
    out.write_text("keep me")
    with pytest.raises(PairsError) as err:
        import_pairs(pairs, videos, out)
    msg = str(err.value)
    for line, what in ((2, "no video 'nowhere'"), (3, "end 3.0 s must be after start 3.0 s"), (4, "empty caption"),
                       (5, "unknown level 'organ'"), (6, "the span 1.0-9.0 s ends after the video's end (4.000 s"), (7, "start and end must be seconds or [hh:]mm:ss")):
        assert f"{pairs}:{line}: {what}" in msg
    assert out.read_text() == "keep me"  # a failed import leaves the old file as it was
    res = import_pairs(pairs, videos, out, skip_bad=True)
    assert res["captions"] == 1 and res["skipped"] == {"missing_video": 1, "bad_span": 2, "empty_caption": 1,
                                                      "unknown_level": 1, "bad_time": 1}
    assert len(CaptionDB(out).select()) == 1


def test_a_pairs_file_without_the_columns(videos, tmp_path):
    pairs = tmp_path / "p.csv"
    pairs.write_text("clip,from,to,text\ncase1,0,1,x\n")
    with pytest.raises(PairsError, match=r"p.csv:1: missing column\(s\) \['video', 'start', 'end', 'caption'\]"):
        import_pairs(pairs, videos, tmp_path / "o.sqlite")
    assert not (tmp_path / "o.sqlite").exists()


@pytest.mark.parametrize("text, seconds", [("12.5", 12.5), ("01:02.5", 62.5), ("1:01:02", 3662.0), (7, 7.0)])
def test_times(text, seconds):
    assert parse_time(text) == seconds
    with pytest.raises(ValueError):
        parse_time("-1")


def test_training_reads_the_imported_videos_in_either_layout(videos, tmp_path):
    """The dataset finds ``case1.mp4`` (flat) and ``case2/case2.mp4`` (SurgLaVi) under the same root."""
    from surgclip.data.dataset import ClipDataset

    pairs = tmp_path / "p.csv"
    pairs.write_text("video,start,end,caption\ncase1,1,3,a\ncase2,0,2,b\n")
    import_pairs(pairs, videos, tmp_path / "c.sqlite")
    table = CaptionDB(tmp_path / "c.sqlite").select()
    ds = ClipDataset(table, video_root=videos, num_frames=2)
    assert [ds.source_path(n) for n in ("case1", "case2")] == [videos / "case1.mp4", videos / "case2" / "case2.mp4"]
    for i, name in enumerate(table.video_name):
        item = ds[i]
        assert item["video_id"] == name and item["video"].shape[0] == 2
