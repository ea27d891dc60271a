"""Crash safety of `surgclip index`: SIGKILL at random moments, then resume; the lock; nothing silent."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import write_video

from surgclip.cli import main
from surgclip.evaluation.index import ClipIndex, IndexError_, model_fingerprint
from surgclip.evaluation.library import index_library
from surgclip.utils import folder_lock

REPO = Path(__file__).resolve().parents[2]
INDEX_ARGS = ["--model", "tiny", "--num-frames", "2", "--batch-size", "2", "--window-s", "2", "--stride-s", "1"]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    for k in range(4):
        write_video(root / f"v{k}.mp4", seconds=4 + k, fps=4, size=32, seed=k)
    return root


@pytest.fixture(scope="module")
def reference(library, tmp_path_factory, tiny_model):
    """An uninterrupted build: (clip key -> embedding)."""
    model, _, _ = tiny_model
    ix = tmp_path_factory.mktemp("ref") / "ix"
    index_library(model, sorted(library.glob("*.mp4")), ix, window_s=2, stride_s=1, num_frames=2, batch_size=2)
    index = ClipIndex(ix)
    return {(c["video"], c["start"], c["end"]): index.embedding(i) for i, c in enumerate(index.clips())}


def _videos_listed(ix: Path) -> int:
    try:
        return len(json.loads((ix / "manifest.json").read_text())["videos"])
    except (OSError, ValueError, KeyError):
        return -1


def _run_and_kill(cmd: list[str], ready, rng: np.random.Generator, timeout: float = 120) -> bool:
    """Start the CLI in its own process group, wait for ``ready()``, sleep a random moment, SIGKILL the group.

    Returns True if it was killed while running (False: it finished first).
    """
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "surgclip.cli", *cmd], env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not ready() and proc.poll() is None and time.monotonic() - t0 < timeout:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.02))
    running = proc.poll() is None
    if running:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return running


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_then_resume_gives_the_uninterrupted_index(seed, library, reference, tmp_path, capsys):
    rng = np.random.default_rng(seed)
    ix = tmp_path / "ix"
    # kill once the m-th file (temp or final) appears under shards/ -- between a shard's .npy and
    # .jsonl, or between a shard and the manifest -- plus a random delay
    m = int(rng.integers(1, 7))
    killed = _run_and_kill(["index", str(library), "--index", str(ix), *INDEX_ARGS],
                           lambda: len(list((ix / "shards").glob("*"))) >= m if (ix / "shards").is_dir() else False, rng)
    on_disk = _videos_listed(ix)
    leftovers = sorted(p.name for p in (ix / "shards").glob("*")) if (ix / "shards").is_dir() else []
    with capsys.disabled():
        print(f"\nseed {seed}: killed={killed} with {on_disk} videos listed; shard files on disk: {leftovers}")
    assert killed and on_disk < 4
    if on_disk >= 0:
        assert len(ClipIndex(ix)) == sum(v["clips"] for v in ClipIndex(ix).video_info().values())  # opens as is
    assert main(["index", str(library), "--index", str(ix), *INDEX_ARGS]) == 0
    out = capsys.readouterr().out
    assert f"kept {max(on_disk, 0)}" in out
    index = ClipIndex(ix)
    keys = [(c["video"], c["start"], c["end"]) for c in index.clips()]
    assert len(keys) == len(set(keys)), "duplicate clips after resume"
    assert set(keys) == set(reference), "missing or extra clips after resume"
    for i, key in enumerate(keys):
        np.testing.assert_allclose(index.embedding(i), reference[key], atol=1e-5)
    listed = {f"{s['id']:06d}{ext}" for s in index.meta["shards"] for ext in (".npy", ".jsonl")}
    assert {p.name for p in (ix / "shards").iterdir()} == listed  # what the kill left unlisted is gone


def test_concurrent_run_is_refused_naming_the_pid(library, tmp_path, tiny_model, capsys):
    ix = tmp_path / "ix"
    with folder_lock(ix, "test holder"):
        assert main(["index", str(library / "v0.mp4"), "--index", str(ix), *INDEX_ARGS]) == 1
        err = capsys.readouterr().err
        assert f"locked by another process (pid {os.getpid()}" in err and str(ix) in err
        assert not (ix / "manifest.json").exists()
    assert main(["index", str(library / "v0.mp4"), "--index", str(ix), *INDEX_ARGS]) == 0  # released


def test_every_video_failing_exits_nonzero_with_reasons(library, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4)
    (bad / "empty.mp4").write_bytes(b"")
    ix = tmp_path / "ix"
    assert main(["index", str(bad / "garbage.mp4"), str(bad / "empty.mp4"), str(bad / "gone.mp4"), "--index", str(ix),
                 *INDEX_ARGS]) == 1
    cap = capsys.readouterr()
    assert "failed 3 (missing_file: 1, undecodable_media: 2)" in cap.out
    assert "no video could be indexed" in cap.err and "gone.mp4" in cap.err
    report = json.loads((ix / "report.json").read_text())
    assert report["failed_by_reason"] == {"missing_file": 1, "undecodable_media": 2} and report["added"] == []
    # a later good video is added and the run succeeds; the bad ones are counted again, not hidden
    assert main(["index", str(library / "v1.mp4"), str(bad / "gone.mp4"), "--index", str(ix), *INDEX_ARGS]) == 0
    assert "added 1 videos, kept 0, failed 1 (missing_file: 1)" in capsys.readouterr().out


def test_other_weights_are_refused_with_both_hashes(library, tmp_path, tiny_model):
    import torch

    import surgclip

    model, _, _ = tiny_model
    ix = tmp_path / "ix"
    index_library(model, [library / "v0.mp4"], ix, window_s=2, stride_s=1, num_frames=2, batch_size=2)
    other, _, _ = surgclip.load("tiny")
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)  # same architecture and config, other weights
    fp, ofp = model_fingerprint(model), model_fingerprint(other)
    assert (fp["model"], fp["config_hash"]) == (ofp["model"], ofp["config_hash"]) and fp["weights_hash"] != ofp["weights_hash"]
    with pytest.raises(IndexError_, match=f"{fp['weights_hash']}.*{ofp['weights_hash']}"):
        index_library(other, [library / "v1.mp4"], ix, window_s=2, stride_s=1, num_frames=2)
    assert set(ClipIndex(ix).video_info()) == {"v0"}


def test_partial_shards_left_by_a_kill_are_ignored_then_removed(library, reference, tmp_path, tiny_model):
    """The states a kill inside a shard write leaves (deterministic complement to the SIGKILL test)."""
    model, _, _ = tiny_model
    ix = tmp_path / "ix"
    index_library(model, [library / "v0.mp4"], ix, window_s=2, stride_s=1, num_frames=2, batch_size=2)
    (ix / "shards" / "000001.npy").write_bytes(b"\x93NUMPY\x01\x00half a header")  # next shard, half written
    (ix / "shards" / ".000001.jsonl.0a1b2c.tmp").write_text('{"video": "v1", "st')  # a temp file never renamed
    (ix / ".manifest.json.3c4d5e.tmp").write_text("{")
    v0 = sum(1 for key in reference if key[0] == "v0")
    assert len(ClipIndex(ix)) == v0 and set(ClipIndex(ix).video_info()) == {"v0"}  # readers ignore them
    report = index_library(model, sorted(library.glob("*.mp4")), ix, window_s=2, stride_s=1, num_frames=2, batch_size=2)
    assert report["cleaned"] == [".manifest.json.3c4d5e.tmp", "shards/.000001.jsonl.0a1b2c.tmp", "shards/000001.npy"]
    index = ClipIndex(ix)
    assert sorted((c["video"], c["start"], c["end"]) for c in index.clips()) == sorted(reference)
