"""Fuzzing the caption database: seeded random corruption of a small SurgLaVi-schema file.

Every case must end in a valid ClipTable or a CaptionDBError that names the file (and, for a bad row,
its caption_id); with ``skip_errors=True`` a bad row is dropped and counted. Never an exception from
inside sqlite3 or numpy.
"""
import shutil
import sqlite3

import numpy as np
import pytest

from surgclip.data.db import CaptionDB, CaptionDBError

# Like data/schema.sql but without NOT NULL / PRIMARY KEY constraints: files written by other tools may lack them.
SCHEMA = """
CREATE TABLE videos (video_id INTEGER, name TEXT, fps REAL, duration REAL, procedure_type TEXT, specialty TEXT);
CREATE TABLE levels (level_id INTEGER, name TEXT);
CREATE TABLE captions (caption_id INTEGER, video_id INTEGER, video_name TEXT, level_id INTEGER, raw_narration TEXT,
    start_time REAL, end_time REAL, duration REAL, is_surgical_content INTEGER, is_descriptive INTEGER, caption TEXT);
"""
N_VIDEOS, PER_VIDEO = 3, 6

# row corruptions: SQL with ? = caption_id; every one makes that row invalid under the default selection
ROW_MUTATIONS = {
    "null_start": "UPDATE captions SET start_time = NULL WHERE caption_id = ?",
    "null_end": "UPDATE captions SET end_time = NULL WHERE caption_id = ?",
    "negative_start": "UPDATE captions SET start_time = -3.5 WHERE caption_id = ?",
    "reversed": "UPDATE captions SET start_time = end_time + 2, end_time = start_time WHERE caption_id = ?",
    "nan_text_time": "UPDATE captions SET end_time = 'NaN' WHERE caption_id = ?",
    "text_time": "UPDATE captions SET start_time = 'twelve' WHERE caption_id = ?",
    "blob_time": "UPDATE captions SET end_time = X'00ff10' WHERE caption_id = ?",
    "non_utf8_caption": "UPDATE captions SET caption = CAST(X'c328ff41' AS TEXT) WHERE caption_id = ?",
    "blob_caption": "UPDATE captions SET caption = X'89504e47' WHERE caption_id = ?",
    "empty_text": "UPDATE captions SET caption = '  ', raw_narration = NULL WHERE caption_id = ?",
    "punctuation_only": "UPDATE captions SET caption = '?!..', raw_narration = '' WHERE caption_id = ?",
    "text_caption_id": "UPDATE captions SET caption_id = 'c' || caption_id WHERE caption_id = ?",
}
# whole-file corruptions: always a CaptionDBError naming the file
FILE_MUTATIONS = {
    "drop_levels": "DROP TABLE levels",
    "drop_captions": "DROP TABLE captions",
    "drop_column": "ALTER TABLE captions DROP COLUMN end_time",
    "drop_video_column": "ALTER TABLE videos DROP COLUMN fps",
    "text_level_id": "UPDATE levels SET level_id = 'one' WHERE level_id = 1",
    "broken_view": "ALTER TABLE captions RENAME TO old_captions; CREATE VIEW captions AS SELECT * FROM gone",
}


def _build(path):
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO levels VALUES (?, ?)", [(1, "task"), (2, "step"), (3, "phase")])
    cid = 0
    for v in range(N_VIDEOS):
        con.execute("INSERT INTO videos VALUES (?, ?, 5.0, 60.0, 'cholecystectomy', 'general')", (v, f"lc{v:03d}"))
        for k in range(PER_VIDEO):
            cid += 1
            con.execute("INSERT INTO captions VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?)",
                        (cid, v, f"lc{v:03d}", 1 + k % 3, f"raw narration {cid}", 2.0 * k, 2.0 * k + 3, 3.0,
                         f"The surgeon dissects tissue number {cid}."))
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def clean_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzzdb") / "clean.sqlite"
    _build(path)
    return path


def _run(db, **kw):
    try:
        return CaptionDB(db).select(**kw), None
    except CaptionDBError as err:
        return None, err


def test_fuzz_caption_db(clean_db, tmp_path):
    all_ids = set(range(1, N_VIDEOS * PER_VIDEO + 1))
    assert set(CaptionDB(clean_db).select().caption_id.tolist()) == all_ids
    rng = np.random.default_rng(20261125)
    cases = 0
    for case in range(60):
        db = tmp_path / f"case{case}.sqlite"
        shutil.copy(clean_db, db)
        con = sqlite3.connect(db)
        kind = rng.choice(["rows", "file", "bytes", "video_name"], p=[0.55, 0.2, 0.1, 0.15])
        bad_ids, label = set(), kind
        if kind == "rows":
            for _ in range(rng.integers(1, 4)):
                name = str(rng.choice(sorted(ROW_MUTATIONS)))
                cid = int(rng.choice(sorted(all_ids - bad_ids)))
                con.execute(ROW_MUTATIONS[name], (cid,))
                bad_ids.add(cid)
                label += f" {name}@{cid}"
        elif kind == "video_name":  # a non-UTF-8 (or NULL) video name spoils all of that video's captions
            v = int(rng.integers(N_VIDEOS))
            value = bytes([0x66, 0xff, 0xfe]) if rng.random() < 0.5 else None
            con.execute("UPDATE videos SET name = CAST(? AS TEXT) WHERE video_id = ?", (value, v))
            bad_ids = set(range(v * PER_VIDEO + 1, (v + 1) * PER_VIDEO + 1))
        elif kind == "file":
            name = str(rng.choice(sorted(FILE_MUTATIONS)))
            con.executescript(FILE_MUTATIONS[name])
            label += f" {name}"
        con.commit()
        con.close()
        if kind == "bytes":  # garbage bytes over part of the file, or the file cut short
            data = bytearray(db.read_bytes())
            if rng.random() < 0.5:
                start = int(rng.integers(0, len(data) - 64))
                data[start:start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            else:
                data = data[: int(rng.integers(0, len(data)))]
            db.write_bytes(bytes(data))

        strict, err = _run(db)
        skipped, skip_err = _run(db, skip_errors=True)
        if kind in ("rows", "video_name"):
            assert err is not None and str(db) in str(err) and "caption " in str(err), label
            assert any(f"caption {c}" in str(err) or f"'c{c}'" in str(err) for c in bad_ids), (label, str(err))
            assert skip_err is None, (label, skip_err)
            assert set(skipped.caption_id.tolist()) == all_ids - bad_ids, label
            assert sum(skipped.dropped.values()) == len(bad_ids), (label, skipped.dropped)
            assert np.isfinite(skipped.start_s).all() and (skipped.end_s > skipped.start_s).all()
            assert all(isinstance(c, str) and c for c in skipped.caption)
        elif kind == "file":
            assert err is not None and skip_err is not None and str(db) in str(err), label
        else:  # damaged bytes: either still readable (unused pages hit) or a clear error naming the file
            for table, e in ((strict, err), (skipped, skip_err)):
                assert (table is not None) != (e is not None) and (e is None or str(db) in str(e)), label
        try:  # the stats command reads the same file: a dict or the same kind of error
            CaptionDB(db).stats()
        except CaptionDBError as e:
            assert str(db) in str(e), label
        cases += 1
    print(f"caption DB fuzz: {cases} corrupted databases tried")
    assert cases == 60
