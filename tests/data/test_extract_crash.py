"""Crash safety of `surgclip extract-frames`: SIGKILL at random moments then resume, the lock,
resume only with the same fps/size, failures by reason, and seeded fuzzing of frames.json."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import write_video

from surgclip.cli import main
from surgclip.data.extract import check_folder, extract_frames, resume_mismatch
from surgclip.data.readers import VideoReadError, open_source
from surgclip.utils import folder_lock

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for k in range(4):
        write_video(root / f"case{k}.mp4", seconds=4 + k, fps=8, size=64, seed=k, noise=True)
    return root


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    """An uninterrupted extraction: folder -> {file name: bytes}."""
    out = tmp_path_factory.mktemp("ref") / "frames"
    m = extract_frames(videos, out, fps=4, size=32, workers=1, progress=False)
    assert len(m["videos"]) == 4 and not m["failed"]
    return _snapshot(out)


def _snapshot(out: Path) -> dict:
    return {d.name: {f.name: f.read_bytes() for f in sorted(d.iterdir())}
            for d in sorted(out.iterdir()) if d.is_dir()}


def _frames_written(out) -> int:
    """Frame files under ``out``'s folders so far. The extractor renames a ``.partial`` folder while
    this lists it (pathlib's glob then raises FileNotFoundError): count again."""
    for _ in range(100):
        try:
            return len(list(out.glob("*/*.jpg")))
        except FileNotFoundError:
            continue
    return 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_then_resume_gives_the_uninterrupted_folders(seed, videos, reference, tmp_path):
    rng = np.random.default_rng(seed)
    out = tmp_path / "frames"
    m = int(rng.integers(1, 60))  # of 4 * 4 * (4..7) = 88 frames  # kill once m frame files exist (in partial or final folders), plus a random delay
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "surgclip.cli", "extract-frames", str(videos), str(out), "--fps", "4",
                             "--size", "32", "--workers", "1"], env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 60 and _frames_written(out) < m:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.005))
    killed = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the worker processes too
    proc.wait()
    complete = [d.name for d in out.glob("*") if (d / "frames.json").is_file() and not d.name.startswith(".")]
    partial = [d.name for d in out.glob(".*.partial")]
    print(f"seed {seed}: killed={killed} after {m} frames; complete {sorted(complete)}, partial {partial}")
    assert killed
    for name in complete:  # what is on disk under a final name is whole
        assert check_folder(out / name, decode=True) == []
    manifest = extract_frames(videos, out, fps=4, size=32, workers=1, progress=False)
    assert len(manifest["videos"]) == 4 and not manifest["failed"] and not manifest["reextracted"]
    assert not list(out.glob(".*.partial"))
    assert _snapshot(out) == reference  # no missing, extra or different frame


def test_concurrent_run_is_refused(videos, tmp_path, capsys):
    out = tmp_path / "frames"
    with folder_lock(out, "test holder"):
        assert main(["extract-frames", str(videos), str(out), "--fps", "4", "--size", "32", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert f"locked by another process (pid {os.getpid()}" in err and "surgclip extract-frames refuses" in err
    assert not list(out.glob("case*"))


def test_resume_only_with_the_same_fps_and_size(videos, tmp_path, capsys):
    out = tmp_path / "frames"
    src = videos / "case0.mp4"
    first = extract_frames(src, out, fps=1, size=32, workers=1, progress=False)["videos"]["case0"]
    assert first["fps"] == 1 and first["frame_count"] == 4
    assert resume_mismatch(out / "case0", 1, {"size": 32, "square": False, "ext": "jpg"}) is None
    m = extract_frames(src, out, fps=5, size=32, workers=1, progress=True)  # a 1-fps folder does not serve 5 fps
    assert "fps 1 (wanted 5)" in m["reextracted"]["case0"]
    assert "re-extracting case0" in capsys.readouterr().err
    reader = open_source(out / "case0")
    assert reader.fps == 5 and reader.num_frames == 20 == m["videos"]["case0"]["frame_count"]
    m = extract_frames(src, out, fps=5, size=16, workers=1, progress=False)
    assert "size 32 (wanted 16)" in m["reextracted"]["case0"] and open_source(out / "case0").read([0]).shape[1:3] == (16, 16)
    # fps above the source's (8) resumes a full-rate folder: recorded fps 8 is what 20 fps gives
    extract_frames(src, out, fps=None, size=16, workers=1, progress=False)
    assert extract_frames(src, out, fps=20, size=16, workers=1, progress=False)["reextracted"] == {}


def test_kill_while_replacing_a_folder_never_leaves_a_partial_one(videos, tmp_path, monkeypatch):
    """Re-extraction (other fps) killed while the replaced folder is being deleted: what is left is
    the complete new folder, and a folder whose frames were deleted behind frames.json is redone."""
    import surgclip.data.extract as extract

    out, src = tmp_path / "frames", videos / "case0.mp4"
    extract_frames(src, out, fps=1, size=32, workers=1, progress=False)
    real_rmtree = shutil.rmtree

    def killed_halfway(path, *args, **kwargs):
        path = Path(path)
        if path.exists() and kwargs.get("ignore_errors") is not True:
            files = sorted(path.iterdir())
            for f in files[: len(files) // 2]:  # frames.json sorts last: it survives, as in a real kill
                f.unlink()
            raise KeyboardInterrupt("killed")
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(extract.shutil, "rmtree", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        extract.extract_video(src, out / "case0", fps=2, size=32)
    monkeypatch.setattr(extract.shutil, "rmtree", real_rmtree)
    assert check_folder(out / "case0", decode=True) == []
    assert open_source(out / "case0").num_frames == 8  # the new 2-fps folder, whole
    # frames deleted by hand behind an intact frames.json: not resumed as complete
    for f in sorted((out / "case0").glob("*.jpg"))[:3]:
        f.unlink()
    why = resume_mismatch(out / "case0", 2, {"size": 32, "square": False, "ext": "jpg"})
    assert why == "5 .jpg files for frame_count 8"
    assert "case0" in extract_frames(src, out, fps=2, size=32, workers=1, progress=False)["reextracted"]
    assert check_folder(out / "case0", decode=True) == []


def test_nothing_extracted_exits_nonzero_with_reasons(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "junk.mp4").write_bytes(os.urandom(2000))
    (src / "empty.mkv").write_bytes(b"")
    assert main(["extract-frames", str(src), str(tmp_path / "out"), "--workers", "1"]) == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["videos"] == {} and manifest["failed_by_reason"] == {"undecodable_media": 2}
    assert "junk: undecodable_media" in capsys.readouterr().out


def _corruptions(text: str, rng: np.random.Generator):
    """Seeded damaged versions of a JSON object's text: truncated, garbage, wrong types, missing keys, negatives."""
    obj = json.loads(text)
    yield "truncated", text[: int(rng.integers(0, len(text)))]
    yield "garbage", rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes().decode("latin-1")
    yield "not an object", json.dumps(list(obj.values()))
    for key in sorted(obj):
        yield f"missing {key}", json.dumps({k: v for k, v in obj.items() if k != key})
        for bad in ("x", None, [1], -3, True, {"a": 1}, float("nan")):
            yield f"{key}={bad!r}", json.dumps(dict(obj, **{key: bad}))


def test_fuzzed_frames_json_is_an_error_naming_the_file_or_a_reextract(videos, tmp_path, capsys):
    rng = np.random.default_rng(0)
    good = tmp_path / "good"
    extract_frames(videos / "case0.mp4", good, fps=4, size=32, workers=1, progress=False)
    text = (good / "case0" / "frames.json").read_text()
    cases = reextracted = errors = kept = 0
    for what, bad in _corruptions(text, rng):
        cases += 1
        kept += what == "missing source" or what.startswith("source=")  # the source path is information only
        (good / "case0" / "frames.json").write_text(bad, encoding="latin-1")
        fps_damaged = what in ("truncated", "garbage", "not an object", "missing fps") or what.startswith("fps=")
        try:  # reading the folder: fps is what matters to readers
            assert open_source(good / "case0").fps == 4 and not fps_damaged, what
        except VideoReadError as err:
            assert fps_damaged and str(good / "case0") in str(err), (what, err)
            errors += 1
        problems = check_folder(good / "case0")  # never raises; a damaged record is reported, naming the folder
        assert not fps_damaged or (problems and all(str(good / "case0") in p for p in problems)), (what, problems)
        if resume_mismatch(good / "case0", 4, {"size": 32, "square": False, "ext": "jpg"}) is not None:
            reextracted += 1
    # extract-frames over a damaged folder rebuilds it and ends with a good one
    (good / "case0" / "frames.json").write_text('{"fps": "4"')
    m = extract_frames(videos / "case0.mp4", good, fps=4, size=32, workers=1, progress=False)
    assert "case0" in m["reextracted"] and check_folder(good / "case0", decode=True) == []
    with capsys.disabled():
        print(f"\nframes.json fuzz: {cases} cases, {errors} clear reader errors, {reextracted} would re-extract")
    assert cases > 50 and errors == 11 and reextracted == cases - kept  # every other damaged frames.json is redone
