"""The sample generator (determinism, layout, Cholec80 files) and extract-frames (resume, check)."""
import json
import sqlite3

import numpy as np
import pytest

from surgclip.data.readers import open_source
from surgclip.sample.generate import PHASES, frame_labels, make_sample, plan_video, render_video
from surgclip.sample.text import CHOLEC80_PROMPTS, TOOLS


def test_layout_and_cholec80_files(small_sample):
    m = json.loads((small_sample / "manifest.json").read_text())
    assert m["seed"] == 0 and m["counts"]["videos"] == 5 and m["phases"] == list(PHASES)
    splits = json.loads((small_sample / "splits.json").read_text())
    assert len(splits["test"]) == 1 and not set(splits["train"]) & set(splits["test"])
    fps = json.loads((small_sample / "cholec80" / "fps.json").read_text())
    number, name = next(iter(fps["videos"].items()))
    video = open_source(small_sample / "cholec80" / "videos" / f"{number}.mp4")
    lines = (small_sample / "cholec80" / "phase_annotations" / f"{number}-phase.txt").read_text().splitlines()
    assert lines[0] == "Frame\tPhase" and len(lines) - 1 == video.num_frames
    assert {line.split("\t")[1] for line in lines[1:]} <= set(PHASES)
    tools = (small_sample / "cholec80" / "tool_annotations" / f"{number}-tool.txt").read_text().splitlines()
    assert tools[0] == "Frame\t" + "\t".join(TOOLS)
    assert [int(t.split("\t")[0]) for t in tools[1:3]] == [0, fps["tool_every_frames"]]
    con = sqlite3.connect(small_sample / "captions.sqlite")
    assert con.execute("SELECT COUNT(*) FROM captions WHERE is_descriptive = 0 OR is_surgical_content = 0").fetchone()[0] > 0
    assert {r[0] for r in con.execute("SELECT DISTINCT level_id FROM captions")} == {1, 2, 3}
    assert con.execute("SELECT COUNT(*) FROM transcriptions").fetchone()[0] >= 1
    con.close()


def test_captions_vary_and_use_prompt_vocabulary(small_sample):
    con = sqlite3.connect(small_sample / "captions.sqlite")
    level3 = [r[0].lower() for r in con.execute("SELECT caption FROM captions WHERE level_id = 3")]
    con.close()
    assert len(set(level3)) > 0.6 * len(level3)  # varied wording, not one sentence per phase
    vocab = set(" ".join(CHOLEC80_PROMPTS).lower().split())
    shared = np.mean([len(set(c.replace(".", "").split()) & vocab) / len(c.split()) for c in level3])
    assert shared > 0.4


def test_pictures_follow_the_phase():
    """Mean colour of frames separates phases (the scene follows the caption) but with spread."""
    rng = np.random.default_rng(3)
    plan = plan_video(0, "x", rng, 5)
    frames = np.stack(list(render_video(plan, seed=3, fps=5, size=64)))
    phases, _ = frame_labels(plan, 5)
    means = {p: frames[[i for i, q in enumerate(phases) if q == p]].reshape(-1, 64 * 64, 3).mean(1).mean(0)
             for p in set(phases)}
    assert np.linalg.norm(means["CalotTriangleDissection"] - means["GallbladderDissection"]) > 20


def test_deterministic(tmp_path):
    a = make_sample(tmp_path / "a", seed=5, num_videos=3, workers=1)
    b = make_sample(tmp_path / "b", seed=5, num_videos=3, workers=2)
    dump = lambda p: list(sqlite3.connect(p / "captions.sqlite").iterdump())  # noqa: E731
    assert dump(a) == dump(b)
    for f in (a / "videos").glob("*/*.mp4"):
        ra, rb = open_source(f), open_source(b / f.relative_to(a))
        idx = list(range(0, ra.num_frames, 17))
        assert np.array_equal(ra.read(idx), rb.read(idx))
    c = make_sample(tmp_path / "c", seed=6, num_videos=3, workers=1)
    assert dump(a) != dump(c)


def test_extract_frames_resume_and_check(small_sample, tmp_path):
    from surgclip.cli import main
    from surgclip.data.extract import check_folder, extract_frames

    out = tmp_path / "frames"
    m = extract_frames(small_sample / "videos", out, fps=2, size=64, workers=2, progress=False)
    assert len(m["videos"]) == 5 and not m["failed"]
    name = sorted(m["videos"])[0]
    rec = m["videos"][name]
    src = open_source(small_sample / "videos" / name / f"{name}.mp4")
    assert rec["fps"] == 2 and rec["frame_count"] == int(src.num_frames / src.fps * 2) and rec["width"] == 64
    frames = open_source(out / name)  # fps from frames.json
    assert frames.fps == 2 and frames.num_frames == rec["frame_count"]
    stamp = (out / name / "000003.jpg").stat().st_mtime_ns
    extract_frames(small_sample / "videos", out, fps=2, size=64, workers=1, progress=False)
    assert (out / name / "000003.jpg").stat().st_mtime_ns == stamp  # finished videos are skipped
    assert check_folder(out / name, decode=True) == []
    (out / name / "000003.jpg").unlink()
    assert any("frames on disk" in p for p in check_folder(out / name))
    assert main(["extract-frames", str(small_sample / "videos"), str(out), "--check"]) == 1
    # a clip from a frame folder shows the same content as the video at the same time
    table_frames = frames.read([4])[0].astype(float)
    from PIL import Image

    vid = np.asarray(Image.fromarray(src.read([10])[0]).resize((64, 64), Image.BICUBIC)).astype(float)
    assert np.abs(table_frames - vid).mean() < 6


def test_extract_video_streams_the_file_front_to_back(tmp_path, monkeypatch):
    """``extract_video`` decodes front to back (decord's random access unused: its background thread
    would keep what it decodes ahead of the image encoder) and writes the frames decord gives."""
    import decord

    from helpers import write_video
    from surgclip.data.extract import extract_video, output_indices

    write_video(tmp_path / "v.mp4", 6, fps=5, noise=True)  # 30 frames, every frame different
    idx = output_indices(5.0, 30, 2.0)
    ref = open_source(tmp_path / "v.mp4").read(idx)
    monkeypatch.setattr(decord.VideoReader, "get_batch", lambda self, i: pytest.fail("decord's random access"))
    rec = extract_video(tmp_path / "v.mp4", tmp_path / "out", fps=2, size=None, ext="png", batch=4)
    assert rec["frame_count"] == len(idx) == 12
    assert np.array_equal(open_source(tmp_path / "out").read(range(len(idx))), ref)
