"""Seeded corruption of every file of a clip index: each case opens and answers consistently, or
raises IndexError_ naming the damaged file -- never a traceback from inside json, numpy or faiss."""
import json
import shutil

import numpy as np
import pytest

from surgclip.evaluation import index as I
from surgclip.evaluation.index import ClipIndex, IndexError_

FP = {"model": "synthetic", "config_hash": "0" * 16, "embed_dim": 16, "weights_hash": "ab" * 32}
BAD_VALUES = ("x", None, [1], -3, 0, True, {"a": 1}, 1e300)


@pytest.fixture(scope="module")
def built(tmp_path_factory, monkeypatch_module):
    """An IVF-searched index of 3 videos (the IVF floor lowered so it trains on 600 clips)."""
    monkeypatch_module.setattr(I, "IVF_MIN_CLIPS", 500)
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("fuzz") / "ix"
    index = ClipIndex(path, fingerprint=FP, kind="ivf")
    for v in range(3):
        x = rng.standard_normal((200 + 50 * v, 16)).astype(np.float32)
        index.add_video(f"vid{v}", x / np.linalg.norm(x, axis=1, keepdims=True), [(t, t + 2.0) for t in range(len(x))])
    assert index.active_kind() == "ivf" and len(index) == 750
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _json_cases(obj, rng, prefix=""):
    """(name, damaged copy of obj) for missing keys and wrong values, recursing one level into lists/dicts."""
    if isinstance(obj, dict):
        for key in sorted(obj):
            yield f"{prefix}{key} missing", {k: v for k, v in obj.items() if k != key}
            for bad in BAD_VALUES:
                if type(bad) is type(obj[key]) and bad == obj[key]:
                    continue  # not a change
                yield f"{prefix}{key}={bad!r}", dict(obj, **{key: bad})
            if isinstance(obj[key], (dict, list)) and obj[key] and not prefix:
                for name, sub in _json_cases(obj[key], rng, prefix=f"{key}."):
                    yield name, dict(obj, **{key: sub})
    elif isinstance(obj, list):
        first = obj[0]
        if isinstance(first, dict):
            for name, sub in _json_cases(first, rng, prefix=f"{prefix}[0]."):
                yield name, [sub, *obj[1:]]
        yield f"{prefix}reversed", obj[::-1]
        yield f"{prefix}duplicated", obj + obj[:1]


def _byte_cases(data: bytes, rng):
    yield "empty", b""
    yield "truncated", data[: int(rng.integers(1, len(data)))]
    yield "garbage", rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
    flipped = bytearray(data)
    for i in rng.integers(0, len(data), 8):
        flipped[i] ^= 0xFF
    yield "bytes flipped", bytes(flipped)


def _exercise(path):
    """Open and use the index the way search and the web app do; check what comes back is consistent."""
    index = ClipIndex(path, fingerprint=FP)
    n = len(index)
    q = np.eye(16, dtype=np.float32)[:2]
    for hits in index.search(q, k=5) + index.search(q, k=3, videos={"vid1"}):
        for h in hits:
            c = index.clip(h["id"])
            assert 0 <= h["id"] < n and (c["video"], c["start"], c["end"]) == (h["video"], h["start"], h["end"])
    assert index.embedding(n - 1).shape == (16,)
    assert sum(v["clips"] for v in index.video_info().values()) == n


def test_fuzzed_index_files_give_clear_errors(built, tmp_path, capsys):
    rng = np.random.default_rng(0)
    _exercise(built)
    files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file() and p.name != ".lock")
    assert {"manifest.json", "shards/000000.npy", "shards/000000.jsonl", "shards/000000.ivf0.npy", "ivf-0.faiss"} <= set(files)
    manifest = json.loads((built / "manifest.json").read_text())
    cases = [("manifest.json", name, json.dumps(obj).encode()) for name, obj in _json_cases(manifest, rng)]
    cases += [("manifest.json", "not an object", json.dumps(list(manifest)).encode())]
    for rel in files:
        data = (built / rel).read_bytes()
        cases += [(rel, name, bad) for name, bad in _byte_cases(data, rng)]
        if rel.endswith(".jsonl"):
            lines = data.decode().splitlines()
            row = json.loads(lines[0])
            for name, bad in _json_cases(row, rng):
                cases.append((rel, f"line 1 {name}", "\n".join([json.dumps(bad), *lines[1:]]).encode()))
            cases.append((rel, "line dropped", "\n".join(lines[1:]).encode()))
            cases.append((rel, "line repeated", "\n".join([lines[0], *lines]).encode()))
        if rel.endswith(".npy"):
            arr = np.load(built / rel)
            for name, bad in (("float64", arr.astype(np.float64)), ("one row less", arr[:-1]), ("int32", arr.astype(np.int32)),
                              ("out of range", arr + 10_000), ("negative", -np.abs(arr) - 1), ("object", arr.astype(object))):
                cases.append((rel, name, bad))
    outcomes, defects, accepted = {"ok": 0, "clear error": 0}, [], []
    for rel, name, bad in cases:
        work = tmp_path / "case"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(built, work)
        target = work / rel
        if isinstance(bad, np.ndarray):
            np.save(target, bad, allow_pickle=bad.dtype == object)
        else:
            target.write_bytes(bad)
        try:
            _exercise(work)
            outcomes["ok"] += 1
            accepted.append(f"{rel} / {name}")
        except IndexError_ as err:
            assert rel.split("/")[-1] in str(err) or str(work) in str(err), (rel, name, str(err))
            outcomes["clear error"] += 1
        except Exception as err:  # anything else is a defect: report the case
            defects.append(f"{rel} / {name}: {type(err).__name__}: {str(err)[:200]}")
    with capsys.disabled():
        print(f"\nindex fuzz: {len(cases)} cases over {len(files)} files: {outcomes}")
    assert not defects, "\n".join(defects)
    # accepted: damage to the information-only model_source, no IVF (exact search), or a "change" to the same value
    # (or a reordered shard list, which is another consistent numbering of the same clips); a missing "pq" is how
    # an index written before the PQ index looks (none trained)
    unexpected = [a for a in accepted if a not in ("manifest.json / ivf=None", "manifest.json / ivf.recall@10=0",
                                                            "manifest.json / shards.reversed",
                                                            "manifest.json / model_source=None", "manifest.json / model_source='x'",
                                                            "manifest.json / model_source missing",
                                                            "manifest.json / pq missing", "manifest.json / shards.[0].pq missing")]
    assert not unexpected, unexpected
    assert len(cases) > 200 and outcomes["clear error"] > len(cases) // 2
