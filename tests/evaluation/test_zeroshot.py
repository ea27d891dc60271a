"""Zero-shot evaluator on fixture videos: scores equal a brute-force forward; bad input counted."""
import numpy as np
import pytest
import torch

import surgclip
from conftest import PHASES
from surgclip import datasets as D
from surgclip.data.readers import open_source
from surgclip.datasets.pathcsv import frame_folder_benchmark
from surgclip.datasets.protocols import get_prompts
from surgclip.datasets.table import FrameSource
from surgclip.evaluation.zeroshot import evaluate_zero_shot
from surgclip.transform import ClipTransform


@pytest.mark.parametrize("prefetch", [2, 0, None])  # reader thread, the caller's thread, ``read_ahead``'s choice
def test_scores_match_brute_force(cholec_root, tiny_model, prefetch, monkeypatch):
    from surgclip.evaluation import clips, zeroshot

    threads, start_reader = [], clips.in_background
    monkeypatch.setattr(clips, "in_background", lambda items, depth: threads.append(depth) or start_reader(items, depth))
    monkeypatch.setattr(zeroshot, "read_ahead", lambda device: 1 if torch.device(device).type == "cpu" else 5)
    model, _, tok = tiny_model
    table = D.load_benchmark("cholec80", cholec_root, split="all")
    table = table.select(table.video == "video49")
    prompts = get_prompts(D.load_protocol("cholec80"), "camma", PHASES)
    res = evaluate_zero_shot(model, tok, table, prompts, num_frames=2, mode="online", batch_size=3, prefetch=prefetch)
    # brute force: 5-fps video, 1-s stride -> frames (t-1 s, t) read directly
    reader = open_source(cholec_root / "videos" / "video49.mp4")
    tf = ClipTransform(model.preprocess_cfg)
    with torch.no_grad():
        text = model.encode_text(surgclip.tokenize(prompts, tok, max_length=tok.context_length))
        for row, t in enumerate(table.time_s):
            a = int(t * reader.fps)
            clip = tf(reader.read([max(a - 5, 0), a]))[None]
            ref = (model.encode_video(clip) @ text.T).numpy()[0]
            np.testing.assert_allclose(res.scores[row], ref, atol=1e-5)
    assert res.valid.all() and res.metrics["num_scored"] == 8
    assert threads == {2: [2], 0: [], None: [1]}[prefetch]  # prefetch=0 reads in the calling thread
    assert res.pred.tolist() == res.scores.argmax(1).tolist()
    assert "mean over videos" in res.protocol["metric"] or "CAMMA" in res.protocol["metric"]


def test_the_reader_thread_starts_when_the_forward_leaves_a_core(monkeypatch):
    import os

    from surgclip.evaluation.clips import read_ahead

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert read_ahead("cpu") == 0 and read_ahead(torch.device("cuda", 0)) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert read_ahead(torch.device("cpu")) == 2


def test_overlapping_clips_share_each_frames_trunk(cholec_root, tiny_model, monkeypatch):
    from surgclip.evaluation.clips import clip_positions

    model, _, tok = tiny_model
    assert model.per_frame_trunk  # tiny: a ViT per frame, then a temporal transformer
    table = D.load_benchmark("cholec80", cholec_root, split="all")
    table = table.select(table.video == "video49")
    prompts = get_prompts(D.load_protocol("cholec80"), "camma", PHASES)
    trunk_frames, trunk = [], model.encode_frame_trunk
    monkeypatch.setattr(model, "encode_frame_trunk", lambda frames: trunk_frames.append(len(frames)) or trunk(frames))
    shared = evaluate_zero_shot(model, tok, table, prompts, num_frames=4, mode="centered", batch_size=3)
    reader = open_source(cholec_root / "videos" / "video49.mp4")
    fps = int(reader.fps)
    frames = {p for t in table.time_s for p in clip_positions(int(t * fps), 4, fps, "centered", reader.num_frames).tolist()}
    assert sum(trunk_frames) == len(frames) < 4 * len(table)  # each frame's trunk once, not once per clip
    monkeypatch.setattr(type(model), "per_frame_trunk", property(lambda self: False))  # the trunk per clip
    per_clip = evaluate_zero_shot(model, tok, table, prompts, num_frames=4, mode="centered", batch_size=3)
    np.testing.assert_allclose(shared.scores, per_clip.scores, atol=1e-5)
    assert shared.valid.all() and shared.pred.tolist() == per_clip.pred.tolist()


@pytest.mark.parametrize("num_frames, mode, forward", [(1, "frame", "encode_video"), (4, "centered", "encode_frame_trunk")])
def test_the_model_gets_uint8_frames_and_normalises_them_itself(cholec_root, tiny_model, monkeypatch, num_frames, mode, forward):
    """The reader hands the model resized uint8 frames (no float pass beside the forward, a quarter of
    the bytes to keep and to move); the scores equal those of frames normalised first."""
    from surgclip.evaluation import zeroshot

    model, _, tok = tiny_model
    table = D.load_benchmark("cholec80", cholec_root, split="all")
    table = table.select(table.video == "video49")
    prompts = get_prompts(D.load_protocol("cholec80"), "camma", PHASES)
    dtypes, run = [], getattr(model, forward)
    monkeypatch.setattr(model, forward, lambda x: dtypes.append(x.dtype) or run(x))
    res = evaluate_zero_shot(model, tok, table, prompts, num_frames=num_frames, mode=mode, batch_size=3)
    assert set(dtypes) == {torch.uint8}
    dtypes.clear()
    monkeypatch.setattr(zeroshot, "ClipTransform", lambda cfg, normalize: ClipTransform(cfg))  # float frames
    ref = evaluate_zero_shot(model, tok, table, prompts, num_frames=num_frames, mode=mode, batch_size=3)
    assert set(dtypes) == {torch.float32} and res.valid.all()
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-5)


def test_missing_frames_sources_and_broken_videos_counted(tmp_path, cholec_root, tiny_model):
    model, _, tok = tiny_model
    table = D.load_benchmark("cholec80", cholec_root, split="all")
    long = table.select(table.video == "video49")
    long.time_s = long.time_s + 4.0  # the last 4 labelled seconds lie past the 8-s video
    cut = table.select(table.video == "video50")
    cut.video = np.full(len(cut), "video51")
    table = type(table).concat([long, table.select(table.video == "video50"), cut])
    data = (cholec_root / "videos" / "video50.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])  # a truncated copy
    table.sources = {"video49": FrameSource(cholec_root / "videos" / "video49.mp4"),
                     "video50": FrameSource(tmp_path / "gone.mp4"), "video51": FrameSource(tmp_path / "cut.mp4")}
    res = evaluate_zero_shot(model, tok, table, PHASES, num_frames=1)
    assert res.skipped == {"missing_frame": 4, "missing_file": 8, "undecodable_media": 8}
    assert res.metrics["num_scored"] == 4 and res.metrics["num_skipped"] == 20


def test_prompt_count_mismatch(cholec_root, tiny_model):
    model, _, tok = tiny_model
    table = D.load_benchmark("cholec80", cholec_root, split="all")
    with pytest.raises(ValueError, match="6 prompts for 7 classes"):
        evaluate_zero_shot(model, tok, table, PHASES[:6])


def test_tools_map_and_frame_folder_with_missing_image(tmp_path, tiny_model):
    from PIL import Image

    model, _, tok = tiny_model
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (0, 100, 300):  # 200.jpg is missing
        Image.fromarray(np.full((32, 32, 3), n % 255, np.uint8)).save(folder / f"{n}.jpg")
    csv = tmp_path / "v.csv"
    csv.write_text("Frame,Phase\n0.jpg,0\n100.jpg,1\n200.jpg,1\n300.jpg,2\n")
    table = frame_folder_benchmark(csv, folder, PHASES, frames_fps=0.25, name_fps=25)
    res = evaluate_zero_shot(model, tok, table, PHASES, num_frames=2, mode="centered")
    assert res.skipped == {"missing_frame": 1} and res.valid.tolist() == [True, True, False, True]
