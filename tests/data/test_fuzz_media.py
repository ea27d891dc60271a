"""Fuzzing the media readers: seeded corruption of video files and frame folders read through
``open_source(...).read(...)``.

Every case must give a valid uint8 [T, H, W, 3] read or a ``VideoReadError`` naming the file; never
another exception type and never a hang. The cases run in one child process with a time limit, so a
decoder that hangs fails the test (naming the last case started) instead of stalling the suite.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

KINDS = ["truncated", "zero_length", "garbage", "flipped_bytes", "jpeg_as_mp4", "mp4_as_mkv_truncated", "text_as_mp4",
         "folder_png_as_jpg", "folder_truncated_jpeg", "folder_garbage_frame", "folder_empty_frame",
         "folder_mixed_sizes", "folder_flipped_png", "folder_flipped_jpeg", "folder_bomb_png"]
N_CASES = 2 + 4 * len(KINDS)
TIME_LIMIT_S = 240


def write_video(path: Path, n: int = 12, fps: int = 5, size: int = 32, vfr: bool = False, seed: int = 0) -> None:
    """A small H.264 file with PyAV; ``vfr`` gives irregular frame durations (pts in ms)."""
    import av
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), format="rgb24")
            if vfr:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += int(rng.choice([40, 100, 250, 500]))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_image(path: Path, fmt: str, size=(24, 32), seed: int = 0) -> None:
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, format=fmt)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a correct CRC) declares ``width`` x ``height``; its pixel data is tiny."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def make_cases(root: Path, seed: int = 0) -> list[dict]:
    """Corrupted media under ``root``: [{"name", "path", "fps" (frame folders), "indices"}]."""
    rng = np.random.default_rng(seed)
    good, vfr = root / "good.mp4", root / "vfr.mp4"
    write_video(good)
    write_video(vfr, vfr=True, seed=1)
    data = good.read_bytes()
    jpeg, png = root / "a.jpg", root / "a.png"
    write_image(jpeg, "JPEG")
    write_image(png, "PNG")
    cases = [{"name": "valid", "path": good}, {"name": "vfr", "path": vfr}]
    for i in range(N_CASES - 2):
        kind = KINDS[i % len(KINDS)]
        case_dir = root / f"case{i:02d}_{kind}"
        case_dir.mkdir()
        case = {"name": kind}
        if kind == "truncated":
            (case_dir / "v.mp4").write_bytes(data[: int(rng.integers(1, len(data)))])
        elif kind == "zero_length":
            (case_dir / "v.mp4").write_bytes(b"")
        elif kind == "garbage":
            (case_dir / "v.mp4").write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
        elif kind == "flipped_bytes":  # same length, random bytes overwritten (box headers or media)
            buf = bytearray(data)
            for pos in rng.integers(0, len(buf), int(rng.integers(1, 40))):
                buf[pos] = int(rng.integers(0, 256))
            (case_dir / "v.mp4").write_bytes(bytes(buf))
        elif kind == "jpeg_as_mp4":
            (case_dir / "v.mp4").write_bytes(jpeg.read_bytes())
        elif kind == "mp4_as_mkv_truncated":  # no .mp4 suffix, so the box check does not run
            (case_dir / "v.mkv").write_bytes(data[: int(rng.integers(len(data) // 4, len(data)))])
        elif kind == "text_as_mp4":
            (case_dir / "v.mp4").write_text("ftyp? no, just text\n" * int(rng.integers(1, 50)))
        else:
            folder = case_dir / "frames"
            folder.mkdir()
            for n in range(4):
                write_image(folder / f"{n:06d}.jpg", "JPEG", seed=n)
            victim = folder / f"{int(rng.integers(4)):06d}.jpg"
            if kind == "folder_png_as_jpg":
                victim.write_bytes(png.read_bytes())
            elif kind == "folder_truncated_jpeg":
                raw = victim.read_bytes()
                victim.write_bytes(raw[: int(rng.integers(1, len(raw)))])
            elif kind == "folder_garbage_frame":
                victim.write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
            elif kind == "folder_empty_frame":
                victim.write_bytes(b"")
            elif kind == "folder_mixed_sizes":
                write_image(victim, "JPEG", size=(16, 16))
            elif kind in ("folder_flipped_png", "folder_flipped_jpeg"):
                if kind == "folder_flipped_png":
                    victim = victim.with_suffix(".png")
                    write_image(victim, "PNG", seed=9)
                    (victim.with_suffix(".jpg")).unlink()
                buf = bytearray(victim.read_bytes())
                for pos in rng.integers(0, len(buf), int(rng.integers(1, 6))):
                    buf[pos] = int(rng.integers(0, 256))
                victim.write_bytes(bytes(buf))
            elif kind == "folder_bomb_png":  # a valid PNG header declaring 60000 x 60000 pixels
                victim.with_suffix(".png").write_bytes(png_header(60000, 60000))
                victim.unlink()
            case["fps"] = 1.0
        case["path"] = next(p for p in case_dir.iterdir())
        cases.append(case)
    for case in cases:
        case["path"] = str(case["path"])
    return cases


def run_cases(cases: list[dict]) -> list[dict]:
    """Open and read every case; returns outcome records (run in the child process)."""
    from surgclip.data.readers import VideoReadError, open_source

    results = []
    for case in cases:
        print(f"CASE {case['name']} {case['path']}", flush=True)
        name = Path(case["path"]).name
        try:
            reader = open_source(case["path"], fps=case.get("fps"))
            n = reader.num_frames
            frames = reader.read([0, n // 2, n - 1, n // 3])
            ok = frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 4 and frames.shape[-1] == 3
            results.append({**case, "outcome": "read" if ok else f"bad read {frames.dtype} {frames.shape}",
                            "num_frames": n, "fps": reader.fps})
        except VideoReadError as err:
            results.append({**case, "outcome": "VideoReadError", "names_file": name in str(err), "message": str(err)})
        except Exception as err:  # noqa: BLE001 - the point of the test: any other type is a failure
            results.append({**case, "outcome": f"{type(err).__name__}: {err}"})
    return results


def test_fuzz_media(tmp_path):
    cases = make_cases(tmp_path, seed=20261125)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    code = ("import json, sys; sys.path.insert(0, sys.argv[2]); import test_fuzz_media as t; "
            "r = t.run_cases(json.load(open(sys.argv[1]))); print('RESULTS ' + json.dumps(r))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cases.json"), str(Path(__file__).parent)],
                              capture_output=True, text=True, timeout=TIME_LIMIT_S, env=env)
    except subprocess.TimeoutExpired as err:
        started = [l for l in (err.stdout or b"").decode().splitlines() if l.startswith("CASE")]
        raise AssertionError(f"media fuzz hung; last case started: {started[-1:]}") from None
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULTS "))[8:])
    assert len(results) == len(cases) == N_CASES
    by = {}
    for r in results:
        by.setdefault(r["outcome"], []).append(r["name"])
        assert r["outcome"] in ("read", "VideoReadError"), (r["name"], r["path"], r["outcome"])
        if r["outcome"] == "VideoReadError":
            assert r["names_file"], r["message"]
    outcome = {r["name"]: r["outcome"] for r in results}
    assert outcome["valid"] == "read" and outcome["vfr"] == "read"
    for r in results:  # these must be refused, not read as blank or stale frames
        if r["name"] in ("truncated", "zero_length", "text_as_mp4", "garbage", "jpeg_as_mp4", "folder_garbage_frame",
                         "folder_empty_frame", "folder_truncated_jpeg", "folder_mixed_sizes", "folder_bomb_png"):
            assert r["outcome"] == "VideoReadError", (r["name"], r["outcome"])
        if r["name"] == "folder_png_as_jpg":  # PIL reads by content: a PNG named .jpg is a valid frame
            assert r["outcome"] == "read"
    # the variable-frame-rate file reads frame by frame as PyAV decodes it
    import av

    from surgclip.data.readers import open_source

    vfr = tmp_path / "vfr.mp4"
    with av.open(str(vfr)) as container:
        reference = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert len(reference) == 12 and open_source(vfr).num_frames == 12
    assert np.array_equal(open_source(vfr).read([0, 5, 11, 3]), reference[[0, 5, 11, 3]])
    print(f"media fuzz: {len(results)} cases tried; outcomes: "
          + ", ".join(f"{k}: {len(v)}" for k, v in sorted(by.items())))
