"""`surgclip data pack`: what the shards hold (against clips read directly), the index against the tar
itself, WebDataset reading the shards, unreadable clips by reason, destinations that hold another
pack, a manifest that does not match its shards, and SIGKILL at random moments then resume."""
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from helpers import write_video

from surgclip.cli import main
from surgclip.data.db import CaptionDB
from surgclip.data.importer import import_pairs
from surgclip.data.pack import PackSettings, pack
from surgclip.data.readers import decode_image, open_source
from surgclip.data.shards import ShardError, load_index, row_key
from surgclip.sampling import clip_frame_span, sample_indices

REPO = Path(__file__).resolve().parents[2]
SETTINGS = PackSettings(fps=2.0, min_frames=4, max_frames=6, size=0, shard_captions=5)


def make_corpus(root: Path, n_videos: int = 4, n_rows: int = 24, seed: int = 0) -> Path:
    """``n_videos`` noise videos (6-8 s, 8 fps, 48 px) and ``n_rows`` random captions at 3 levels,
    imported into ``root/captions.sqlite`` with ``surgclip data import``."""
    rng = np.random.default_rng(seed)
    lengths = {}
    for k in range(n_videos):
        lengths[f"case{k}"] = 6 + k % 3
        write_video(root / "videos" / f"case{k}.mp4", lengths[f"case{k}"], fps=8, size=48, seed=k, noise=True)
    with open(root / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "start", "end", "caption", "level"])
        for i in range(n_rows):
            name = f"case{i % n_videos}"
            start = float(np.round(rng.uniform(0, lengths[name] - 1.5), 2))
            end = float(np.round(min(lengths[name], start + rng.uniform(0.3, 5)), 2))
            w.writerow([name, start, end, f"The surgeon does step {i}, carefully.", 1 + i % 3])
    import_pairs(root / "pairs.csv", root / "videos", root / "captions.sqlite")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def packed(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "shards"
    pack(corpus / "captions.sqlite", str(out), video_root=corpus / "videos", settings=SETTINGS, workers=2,
         progress=False)
    return out


def _members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_shards_hold_every_selected_row_with_its_frames(corpus, packed):
    table = CaptionDB(corpus / "captions.sqlite").select()
    manifest = json.loads((packed / "manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"]["selected"] == manifest["counts"]["packed"] == len(table) == 24
    assert manifest["counts"]["shards"] == 5 and manifest["skipped"] == {}
    members = {}
    for s in manifest["shards"]:
        members.update(_members(packed / s["name"]))
    readers = {}
    for i in range(len(table)):
        key = row_key(table.caption_id[i])
        meta = json.loads(members[f"{key}.json"])
        # the selection's cleaning, level and times, as training reads them
        assert meta["caption"] == table.caption[i] == f"does step {table.caption_id[i] - 1} carefully"
        assert (meta["level"], meta["video_id"], meta["start_s"], meta["end_s"]) == \
               (table.level[i], table.video_name[i], table.start_s[i], table.end_s[i])
        reader = readers.setdefault(meta["video_id"], open_source(corpus / "videos" / f"{meta['video_id']}.mp4"))
        first, last = clip_frame_span(meta["start_s"], meta["end_s"], reader.fps, reader.num_frames)
        n = min(max(int(np.ceil((meta["end_s"] - meta["start_s"]) * 2 - 1e-6)), 4), 6, last - first + 1)
        assert meta["num_frames"] == n
        assert meta["source_frames"] == sample_indices(meta["start_s"], meta["end_s"], 8.0, n, "uniform",
                                                       num_frames_in_video=reader.num_frames).tolist()
        ref = reader.read(np.arange(first, last + 1)).astype(np.float32)  # every frame of the clip
        for k in range(n):
            stored = decode_image(members[f"{key}.{k:04d}.jpg"], key).astype(np.float32)
            err = np.abs(ref - stored).mean(axis=(1, 2, 3))  # noise frames: only the right one is close
            assert err.argmin() == meta["source_frames"][k] - first and err.min() < 12, (key, k, err)
        assert f"{key}.{n:04d}.jpg" not in members


def test_index_points_at_the_tar_members_and_webdataset_reads_the_shards(packed):
    require(importlib.util.find_spec("webdataset") is not None,
            "webdataset reads the shards here as open_clip does (pip install 'surgclip[test]')")
    import webdataset as wds

    ix = load_index(str(packed))
    manifest = ix.manifest
    for s_no, s in enumerate(manifest["shards"]):
        members = _members(packed / s["name"])
        data = (packed / s["name"]).read_bytes()
        for i in np.flatnonzero(ix.shard == s_no):
            key = row_key(ix.table.caption_id[i])
            for k in range(ix.count[i]):
                off, size = ix.offsets[ix.first[i] + k], ix.sizes[ix.first[i] + k]
                assert data[off:off + size] == members[f"{key}.{k:04d}.jpg"]
        samples = list(wds.WebDataset(str(packed / s["name"]), shardshuffle=False))
        keys = [smp["__key__"] for smp in samples]
        assert keys == [row_key(c) for c in ix.table.caption_id[ix.shard == s_no]]
        assert all(json.loads(smp["json"])["num_frames"] == sum(e.endswith(".jpg") for e in smp) for smp in samples)


def test_content_hash_is_what_was_asked_and_shards_are_reproducible(corpus, packed, tmp_path):
    again = pack(corpus / "captions.sqlite", str(tmp_path / "again"), video_root=corpus / "videos", settings=SETTINGS,
                 workers=1, progress=False)
    first = json.loads((packed / "manifest.json").read_text())
    assert again["content_hash"] == first["content_hash"] and again["shards_sha256"] == first["shards_sha256"]
    other = pack(corpus / "captions.sqlite", str(tmp_path / "other"), video_root=corpus / "videos", levels=[1, 2],
                 settings=SETTINGS, workers=1, progress=False)
    assert other["content_hash"] != first["content_hash"] and other["counts"]["levels"] == {"1": 8, "2": 8}


def test_unreadable_clips_are_counted_by_reason(corpus, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("case0", "case1"):
        os.symlink(corpus / "videos" / f"{name}.mp4", videos / f"{name}.mp4")
    data = (corpus / "videos" / "case2.mp4").read_bytes()
    (videos / "case2.mp4").write_bytes(data[: len(data) // 2])  # truncated; case3 is missing
    db = tmp_path / "captions.sqlite"
    db.write_bytes((corpus / "captions.sqlite").read_bytes())
    import sqlite3

    with sqlite3.connect(db) as con:  # caption 1 (case0) now lies past its video's end
        con.execute("UPDATE captions SET start_time = 100, end_time = 101 WHERE caption_id = 1")
    m = pack(db, str(tmp_path / "out"), video_root=videos, settings=SETTINGS, workers=1, progress=False)
    assert m["skipped"] == {"missing_file": 6, "undecodable_media": 6, "bad_span": 1}
    assert m["counts"]["packed"] == 24 - 13 == len(load_index(str(tmp_path / "out")).table)
    reasons = {s["caption_id"]: s["reason"] for f in (tmp_path / "out").glob("shard-*.json")
               for s in json.loads(f.read_text())["skipped"]}
    assert len(reasons) == 13 and reasons[1] == "bad_span" and reasons[4] == "missing_file"  # 4: case3


def test_a_destination_with_another_pack_or_stray_shards_is_refused(corpus, packed, tmp_path, capsys):
    first = json.loads((packed / "manifest.json").read_text())["content_hash"]
    with pytest.raises(ShardError) as err:
        pack(corpus / "captions.sqlite", str(packed), video_root=corpus / "videos", levels=[1],
             settings=SETTINGS, workers=1, progress=False)
    assert "holds another pack" in str(err.value) and first in str(err.value)
    other = str(err.value).split("has content hash ")[-1].split(";")[0]
    assert len(other) == 64 and other != first
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "shard-000000.tar").write_bytes(b"x")
    code = main(["data", "pack", "--db", str(corpus / "captions.sqlite"), "--videos", str(corpus / "videos"),
                 "--out", str(stray), "--workers", "1"])
    assert code == 1 and "holds shards (shard-000000.tar" in capsys.readouterr().err


def test_a_manifest_that_does_not_match_its_shards_names_both(packed, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(packed, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["shards"][1]["size"] += 512
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"manifest.json says shard-000001.tar has \d+ bytes; .*shard-000001.tar has"):
        load_index(str(bad))
    manifest["shards"][1]["size"] -= 512
    manifest["shards"][2]["sha256"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"manifest.json and .*shard-000002.json disagree on shard-000002.tar's sha256"):
        load_index(str(bad))
    (bad / "shard-000003.json").unlink()
    (bad / "manifest.json").write_text((packed / "manifest.json").read_text())
    with pytest.raises(ShardError, match=r"lists shard-000003.tar, whose index .*shard-000003.json is missing"):
        load_index(str(bad))
    with pytest.raises(ShardError, match="holds no packed shards"):
        load_index(str(tmp_path / "nothing"))


def _indexes_written(out: Path) -> int:
    return len(list(out.glob("shard-*.json"))) if out.is_dir() else 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_every_row_once(corpus, packed, tmp_path):
    """Three runs killed (SIGKILL, the whole process group) at random moments into the same folder,
    each resuming what the last one left; then a run to the end."""
    rng = np.random.default_rng(0)
    out = tmp_path / "shards"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "surgclip.cli", "data", "pack", "--db", str(corpus / "captions.sqlite"),
           "--videos", str(corpus / "videos"), "--out", str(out), "--fps", "2", "--min-frames", "4",
           "--max-frames", "6", "--size", "0", "--shard-size", "5", "--workers", "1"]
    seen = []
    for attempt in range(3):
        # kill once one more shard index exists than before (or at start-up), plus a random delay
        m = min(4, _indexes_written(out) + int(rng.integers(0, 2)))
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 60 and _indexes_written(out) < m:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.2))
        assert proc.poll() is None, "the pack finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the worker too
        proc.wait()
        seen.append(_indexes_written(out))
    print(f"shard indexes present after each kill: {seen}")
    assert subprocess.run(cmd, env=env, cwd=REPO, capture_output=True).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    reference = json.loads((packed / "manifest.json").read_text())
    assert manifest["shards_sha256"] == reference["shards_sha256"]  # byte for byte the uninterrupted pack
    ids = sorted(int(json.loads(v)["caption_id"]) for s in manifest["shards"]
                 for k, v in _members(out / s["name"]).items() if k.endswith(".json"))
    assert ids == list(range(1, 25))  # every row once: no duplicate, none missing
    assert not (out / ".staging").exists() and sorted(p.name for p in out.glob("shard-*")) == sorted(
        [s["name"] for s in manifest["shards"]] + [s["name"].replace(".tar", ".json") for s in manifest["shards"]])
