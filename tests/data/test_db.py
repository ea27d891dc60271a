"""CaptionDB: filters against a brute-force pass over the rows, cleaning, schema errors, stats CLI."""
import shutil
import sqlite3

import pytest

from surgclip.data.db import CaptionDB, CaptionDBError, clean_caption


def rows(db):
    con = sqlite3.connect(db)
    out = con.execute("SELECT c.caption_id, v.name, c.level_id, c.start_time, c.end_time, c.caption, "
                      "c.raw_narration, c.is_descriptive, c.is_surgical_content, v.procedure_type "
                      "FROM captions c JOIN videos v USING (video_id)").fetchall()
    con.close()
    return out


def test_clean_caption_as_released():
    assert clean_caption("The surgeon grasps the gall-bladder (fundus).") == "grasps the gall bladder fundus"
    assert clean_caption("Cut; then   clip/cut: 'done'!?") == "cut then clip cut done"


@pytest.mark.parametrize("levels,lo,hi", [([1, 2, 3], 0, 500), ([3], 0, 500), ([1, 2], 2.5, 6.0)])
def test_select_matches_brute_force(small_sample, levels, lo, hi):
    db = small_sample / "captions.sqlite"
    table = CaptionDB(db).select(levels=levels, min_duration=lo, max_duration=hi)
    want = sorted(r[0] for r in rows(db) if r[2] in levels and lo < r[4] - r[3] <= hi and r[7] == 1 and r[8] == 1)
    assert table.caption_id.tolist() == want and len(want) > 0
    ref = {r[0]: r for r in rows(db)}
    for i, cid in enumerate(table.caption_id.tolist()):
        assert table.caption[i] == clean_caption(ref[cid][5])
        assert table.video_name[i] == ref[cid][1] and table.start_s[i] == ref[cid][3]


def test_select_text_field_filters(small_sample):
    db = CaptionDB(small_sample / "captions.sqlite")
    raw = db.select(levels=[2], text_field="raw_narration", clean=False)
    ref = {r[0]: r[6] for r in rows(small_sample / "captions.sqlite")}
    assert raw.caption == [ref[c] for c in raw.caption_id.tolist()]
    everything = db.select(descriptive_only=False, surgical_only=False)
    default = db.select()
    assert len(everything) > len(default)  # the sample has rows the default filter drops
    assert len(db.select(procedure_types=["cholecystectomy"])) == len(default)
    assert len(db.select(procedure_types=["gastrectomy"])) == 0
    names = default.videos()[:2]
    assert set(db.select(video_names=names).video_name) == set(names)


def _broken_copy(small_sample, tmp_path, sql):
    db = tmp_path / "broken.sqlite"
    shutil.copy(small_sample / "captions.sqlite", db)
    con = sqlite3.connect(db)
    con.executescript(sql)
    con.commit()
    con.close()
    return CaptionDB(db)


def test_schema_and_row_errors(small_sample, tmp_path):
    with pytest.raises(CaptionDBError, match="not found"):
        CaptionDB(tmp_path / "none.sqlite").select()
    (tmp_path / "junk.sqlite").write_text("not sqlite at all" * 100)
    with pytest.raises(CaptionDBError, match="not a readable SQLite"):
        CaptionDB(tmp_path / "junk.sqlite").select()
    with pytest.raises(CaptionDBError, match="table 'levels' is missing"):
        _broken_copy(small_sample, tmp_path, "DROP TABLE levels;").select()
    with pytest.raises(CaptionDBError, match=r"table 'captions' lacks column\(s\) \['is_descriptive'\]"):
        _broken_copy(small_sample, tmp_path, "ALTER TABLE captions DROP COLUMN is_descriptive;").select()
    with pytest.raises(CaptionDBError, match=r"unknown level id\(s\) \[4\]"):
        CaptionDB(small_sample / "captions.sqlite").select(levels=[1, 4])
    db = _broken_copy(small_sample, tmp_path, "UPDATE captions SET caption = '  ', raw_narration = '...' "
                                               "WHERE caption_id = 3; UPDATE captions SET end_time = start_time "
                                               "WHERE caption_id = 5;")
    with pytest.raises(CaptionDBError, match="caption 3 of video 'lc001' is empty"):
        db.select()
    with pytest.raises(CaptionDBError, match="caption 5 of video 'lc001' has invalid times"):
        db.select(text_field="raw_narration", clean=False)  # raw '...' is not empty uncleaned
    table = db.select(skip_errors=True)
    assert table.dropped == {"empty_caption": 1, "invalid_times": 1}
    assert 3 not in table.caption_id and 5 not in table.caption_id


def test_readonly_and_stats_cli(small_sample, capsys):
    from surgclip.cli import main

    db = small_sample / "captions.sqlite"
    before = db.read_bytes()
    assert main(["data", "stats", str(db)]) == 0
    out = capsys.readouterr().out
    assert "1 task" in out and "3 phase" in out and "cholecystectomy" in out
    assert db.read_bytes() == before
    stats = CaptionDB(db).stats()
    assert stats["videos"] == 5 and set(stats["levels"]) == {1, 2, 3}
