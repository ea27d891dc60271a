"""Clip index (incremental, model check, corrupt files) and the CLI end to end."""
import json
import shutil

import numpy as np
import pytest

from surgclip.cli import main
from surgclip.evaluation.index import ClipIndex, IndexError_, model_fingerprint


def test_index_incremental_and_refuses_other_model(tmp_path, tiny_model):
    model, _, _ = tiny_model
    fp = model_fingerprint(model)
    idx = ClipIndex(tmp_path / "idx", fingerprint=fp)
    idx.add_video("a", np.eye(128, dtype=np.float32)[:3], [(0, 4), (2, 6), (4, 8)])
    idx2 = ClipIndex(tmp_path / "idx", fingerprint=fp)
    idx2.add_video("b", np.eye(128, dtype=np.float32)[3:5], [(0, 4), (2, 6)])
    assert len(ClipIndex(tmp_path / "idx")) == 5 and ClipIndex(tmp_path / "idx").has_video("a")
    hit = ClipIndex(tmp_path / "idx").search(np.eye(128, dtype=np.float32)[[3]], k=1)[0][0]
    assert (hit["video"], hit["start"], hit["end"]) == ("b", 0, 4)
    other = dict(fp, model="SurgCLIP-B", config_hash="0" * 16, embed_dim=256)
    with pytest.raises(IndexError_, match=r"built by model 'tiny'.*with model 'SurgCLIP-B'"):
        ClipIndex(tmp_path / "idx", fingerprint=other)


@pytest.mark.parametrize("batch_size, prefetch", [(1, 0), (3, 0), (3, 2)])  # prefetch: a reader thread
def test_the_indexer_streams_each_video_once_front_to_back(tmp_path, tiny_model, monkeypatch, batch_size, prefetch):
    """``embed_video`` with overlapping windows: every read starts past the previous one (each frame
    decoded and transformed once), and the embeddings of its uint8 frames equal those of each window
    read and normalised on its own."""
    import torch

    from surgclip.data.readers import open_source
    from surgclip.evaluation import library
    from helpers import record_reads
    from surgclip.transform import ClipTransform

    from helpers import write_video

    model, _, _ = tiny_model
    write_video(tmp_path / "v.mp4", 12, fps=5, size=32)
    reads, dtypes, encode = record_reads(library, monkeypatch), [], model.encode_video
    monkeypatch.setattr(model, "encode_video", lambda x: dtypes.append(x.dtype) or encode(x))
    threads, start_reader = [], library.in_background
    monkeypatch.setattr(library, "read_ahead", lambda device: prefetch)
    monkeypatch.setattr(library, "in_background", lambda items, depth: threads.append(depth) or start_reader(items, depth))
    emb, spans, _ = library.embed_video(model, tmp_path / "v.mp4", 4.0, 1.0, 3, batch_size=batch_size)
    monkeypatch.undo()
    assert all(min(b) > max(a) for a, b in zip(reads, reads[1:])), reads
    assert set(dtypes) == {torch.uint8}  # resized frames go in as uint8; the model normalises them
    assert threads == ([prefetch] if prefetch else [])
    reader, transform = open_source(tmp_path / "v.mp4"), ClipTransform(model.preprocess_cfg)
    frames = library.window_frames(spans, reader.fps, 3, reader.num_frames)
    assert sorted(sum(reads, [])) == sorted(set(frames.ravel().tolist()))
    with torch.no_grad():
        ref = torch.cat([model.encode_video(transform(reader.read(w))[None]) for w in frames]).numpy()
    assert emb.shape == (len(spans), ref.shape[1]) and len(spans) == 9
    np.testing.assert_allclose(emb, ref, rtol=0, atol=1e-5)


def test_corrupt_index_is_a_clear_error(tmp_path, tiny_model):
    model, _, _ = tiny_model
    idx = ClipIndex(tmp_path / "idx", fingerprint=model_fingerprint(model))
    idx.add_video("a", np.eye(128, dtype=np.float32)[:3], [(0, 4), (2, 6), (4, 8)])
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "idx", bad)
    data = (bad / "shards" / "000000.npy").read_bytes()
    (bad / "shards" / "000000.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexError_, match=r"shards/000000.npy"):
        ClipIndex(bad).search(np.eye(128, dtype=np.float32)[:1])
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(IndexError_, match="corrupt index manifest .*manifest.json"):
        ClipIndex(bad)
    assert len(ClipIndex(tmp_path / "idx")) == 3  # the original is untouched


def test_v1_layout_is_refused_with_instructions(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "meta.json").write_text('{"version": 1, "model": "tiny"}')
    np.save(tmp_path / "old" / "embeddings.npy", np.zeros((1, 128), np.float32))
    with pytest.raises(IndexError_, match=r"version-1 clip index .*Delete it and rebuild"):
        ClipIndex(tmp_path / "old")


def test_cli_zeroshot_index_search(cholec_root, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["zeroshot", "--benchmark", "cholec80", "--root", str(cholec_root), "--model", "tiny", "--split", "all",
                 "--prompts", "camma", "--num-frames", "2", "--out", str(out)]) == 0
    report = json.loads((out / "zeroshot.json").read_text())
    assert report["metrics"]["num_scored"] == 16 and report["protocol"]["convention"] == "surglavi"
    assert report["predictions"] == ["predictions_cholec80.csv"] and (out / "predictions_cholec80.csv").is_file()
    assert (out / "zeroshot.md").is_file() and (out / "phase_ribbons.png").is_file() and (out / "confusion.png").is_file()
    assert main(["index", str(cholec_root / "videos" / "video49.mp4"), "--index", str(tmp_path / "ix"),
                 "--num-frames", "2"]) == 0
    assert main(["index", str(cholec_root / "videos"), "--index", str(tmp_path / "ix"), "--num-frames", "2"]) == 0
    assert "added 1 videos, kept 1" in capsys.readouterr().out
    assert main(["search", "clipping the cystic duct", "--index", str(tmp_path / "ix"), "-k", "3",
                 "--sheet", str(tmp_path / "sheet.png")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "score" in l]
    assert len(lines) == 3 and (tmp_path / "sheet.png").is_file()


def test_cli_real_video04_frames(realdata, tmp_path):
    out = tmp_path / "rep"
    assert main(["zeroshot", "--benchmark", "cholec80", "--labels-csv",
                 str(realdata / "labels/cholec80_every100frames/video_4.csv"), "--frames-dir",
                 str(realdata / "frames/cholec80_video04"), "--frames-fps", "0.25", "--name-fps", "25",
                 "--num-frames", "1", "--limit", "24", "--batch-size", "12", "--out", str(out)]) == 0
    assert json.loads((out / "zeroshot.json").read_text())["metrics"]["num_scored"] == 24


def test_cli_real_cholec_clips_index(realdata, tmp_path, capsys):
    clip = sorted((realdata / "videos/cholec_clips").glob("*.mp4"))[0]
    assert main(["index", str(clip), "--index", str(tmp_path / "ix"), "--window-s", "16", "--stride-s", "16",
                 "--num-frames", "2"]) == 0
    assert main(["search", "hook dissecting the gallbladder", "--index", str(tmp_path / "ix"), "-k", "2"]) == 0
    assert clip.stem in capsys.readouterr().out


def test_index_built_with_relative_paths_serves_from_another_folder(tmp_path, small_sample, tiny_model, monkeypatch):
    """Sources and a local model given relative to the working folder are recorded absolute, so
    `surgclip serve` started elsewhere loads the model and finds the media."""
    import surgclip
    from surgclip.serve.engine import load_engine

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "videos").mkdir(parents=True)
    elsewhere.mkdir()
    video = sorted((small_sample / "videos").glob("*/*.mp4"))[0]
    shutil.copy(video, work / "videos" / "case1.mp4")
    surgclip.save_pretrained(tiny_model[0], work / "model")
    monkeypatch.chdir(work)
    assert main(["index", "videos", "--index", "ix", "--model", "model", "--num-frames", "2"]) == 0
    meta = ClipIndex(work / "ix").video_info()["case1"]
    assert meta["path"] == str(work / "videos" / "case1.mp4")
    monkeypatch.chdir(elsewhere)
    engine = load_engine(str(work / "ix"))
    assert engine.model_source == str(work / "model")
    answer = engine.search("clipping of the cystic duct", k=3)
    assert len(answer["hits"]) == 3 and all(h["available"] for h in answer["hits"])
